import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { chunkText } from './chunk.ts';
import { createMemory } from './store.ts';

const scope = { keyId: 'key_1', namespace: 'agent' };

function setup(opts: Partial<Parameters<typeof createMemory>[1]> = {}) {
  let t = 1_000_000;
  const memory = createMemory(
    new DatabaseSync(':memory:'),
    { capacity: 1000, decayDays: 1, ...opts },
    () => t,
  );
  return { memory, advance: (ms: number) => (t += ms) };
}

describe('memory', () => {
  it('recalls a fact phrased differently (stemmed words), ranked by BM25, only in its own scope', async () => {
    const { memory } = setup();
    await memory.add(scope, [
      { text: 'The user prefers dark themes in every editor' },
      { text: 'Deploys happen on Fridays after lunch' },
    ]);
    await memory.add({ ...scope, keyId: 'key_2' }, [{ text: 'The user preferred light editors' }]);
    const r = await memory.recall(scope, { query: 'Which editor theme would this user prefer?' });
    expect(r.map((e) => e.text)).toEqual(['The user prefers dark themes in every editor']);
    expect(await memory.recall(scope, { query: 'what is it' })).toEqual([]);
    // FTS5 syntax in a query is only words
    expect(await memory.recall(scope, { query: 'NEAR("x" AND) OR * ^' })).toEqual([]);
  });

  it('matches on the rarer words when a query word is in thousands of entries', async () => {
    const { memory } = setup({ capacity: 10_000 });
    await memory.add(
      scope,
      Array.from({ length: 2100 }, (_, i) => ({ text: `status report number ${i}` })),
    );
    await memory.add(scope, [{ text: 'status of the zebra enclosure' }]);
    const [hit] = await memory.recall(scope, { query: 'zebra status' });
    expect(hit?.text).toBe('status of the zebra enclosure');
    expect(await memory.recall(scope, { query: 'status', limit: 3 })).toHaveLength(3);
  });

  it('forgets by TTL, decay, delete and capacity', async () => {
    const { memory, advance } = setup({ capacity: 3 });
    const [short] = await memory.add(scope, [
      { text: 'cursor is on line 42', kind: 'short', ttlSeconds: 10 },
    ]);
    const [fact] = await memory.add(scope, [{ text: 'the build uses make' }]);
    advance(11_000);
    expect(await memory.recall(scope, { query: 'cursor line' })).toEqual([]);
    expect(() => memory.get(scope, short!.id)).toThrow(/not found/);
    expect(memory.sweep().expired).toBe(1);
    advance(2 * 24 * 3600_000); // unused for two days: decays
    expect(memory.sweep().decayed).toBe(1);
    expect(() => memory.get(scope, fact!.id)).toThrow(/not found/);
    const added = await memory.add(
      scope,
      ['one', 'two', 'three', 'four'].map((text) => ({ text: `fact ${text}` })),
    );
    expect(added.map((e) => e.text)).toEqual(['fact two', 'fact three', 'fact four']);
    memory.remove(scope, added[0]!.id);
    expect(() => memory.remove(scope, added[0]!.id)).toThrow(/not found/);
    expect(memory.clear(scope)).toBe(2);
  });

  it('chunks documents and cites the chunk', async () => {
    const { memory } = setup();
    const text = `Intro paragraph.\n\n${'Filler sentence here. '.repeat(60)}\n\nThe reactor coolant is heavy water.`;
    const doc = await memory.ingest(scope, { title: 'Manual', text, chunkSize: 500 });
    expect(doc.chunks).toBeGreaterThan(2);
    const [hit] = await memory.recall(scope, { query: 'what cools the reactor' });
    expect(hit?.citation).toMatchObject({ documentId: doc.id, title: 'Manual', chunk: doc.chunks - 1 });
    expect(text.slice(hit!.citation!.start, hit!.citation!.end).trim()).toBe(hit!.text);
    memory.removeDocument(scope, doc.id);
    expect(await memory.recall(scope, { query: 'reactor' })).toEqual([]);
  });

  it('fuses vector similarity when embeddings exist', async () => {
    const vec = (s: string) => Float32Array.from([s.includes('feline') || s.includes('cat') ? 1 : 0, 1]);
    const { memory } = setup({ embed: (texts) => Promise.resolve(texts.map(vec)) });
    await memory.add(scope, [{ text: 'a feline sat on the mat' }, { text: 'dogs bark' }]);
    const [hit] = await memory.recall(scope, { query: 'cat' });
    expect(hit?.text).toBe('a feline sat on the mat');
  });

  it('chunkText keeps offsets into the original', () => {
    const text = 'a'.repeat(50) + '\n\n' + 'b. '.repeat(400);
    for (const c of chunkText(text, 300)) {
      expect(c.text.length).toBeLessThanOrEqual(300);
      expect(text.slice(c.start, c.end).trim()).toBe(c.text);
    }
  });
});
