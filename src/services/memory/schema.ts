/**
 * Memory's tables in services.db. `memories_fts` is an external-content FTS5 index over
 * `memories.text` (porter stemmer over unicode61 words), kept in step by the triggers; entries
 * are only ever inserted and deleted, never updated in their text. `IF NOT EXISTS` throughout:
 * run at every start.
 */
export const MEMORY_SCHEMA = `
    CREATE TABLE IF NOT EXISTS memories (
      id INTEGER PRIMARY KEY,
      key_id TEXT NOT NULL,
      namespace TEXT NOT NULL,
      kind TEXT NOT NULL,
      text TEXT NOT NULL,
      metadata TEXT NOT NULL,
      session TEXT,
      document_id TEXT,
      chunk INTEGER,
      start INTEGER,
      end INTEGER,
      created_at INTEGER NOT NULL,
      expires_at INTEGER,
      last_used_at INTEGER NOT NULL,
      embedding BLOB
    );
    CREATE INDEX IF NOT EXISTS memories_scope ON memories (key_id, namespace, last_used_at);
    CREATE INDEX IF NOT EXISTS memories_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS memories_document ON memories (document_id) WHERE document_id IS NOT NULL;
    CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
      text, content = 'memories', content_rowid = 'id', tokenize = 'porter unicode61'
    );
    CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
      INSERT INTO memories_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
      INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TABLE IF NOT EXISTS documents (
      id TEXT PRIMARY KEY,
      key_id TEXT NOT NULL,
      namespace TEXT NOT NULL,
      title TEXT NOT NULL,
      source TEXT,
      metadata TEXT NOT NULL,
      chunks INTEGER NOT NULL,
      created_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS documents_scope ON documents (key_id, namespace);
`;
