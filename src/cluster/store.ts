import { CoveError } from '../core/errors.ts';
import type { Db } from './db.ts';
import { migrate } from './migrations.ts';

/**
 * What the API replicas share (docs/scale-out.md): API keys, the nodes with their last
 * heartbeat, and which node holds each sandbox. A node's own facts about its sandboxes (slots,
 * agent tokens, uid ranges) stay in its local SQLite store (src/store): they mean nothing on
 * another host. The statements are the same on both engines (db.ts).
 */
export type NodeState = 'up' | 'draining' | 'lost';

export interface NodeRecord {
  name: string;
  /** Where API replicas reach the node's Cove (its API and gateway). */
  url: string;
  state: NodeState;
  slots: number;
  free: number;
  /** Templates the node has built or cached (placement prefers those). */
  templates: string[];
  lastSeen: number;
  registeredAt: number;
}

/** Where a sandbox runs; `lost` when its node stopped heartbeating while it ran. */
export interface Placement {
  id: string;
  node: string;
  keyId: string | null;
  template: string;
  state: 'running' | 'lost';
  createdAt: number;
  /** The sandbox's envd access token, sealed (seal.ts); null when created without one. */
  envdToken?: string | null;
}

/** Kinds of resources that live on one node (the `homes` table). */
export type HomeKind = 'volume' | 'volume-name' | 'snapshot' | 'template' | 'build' | 'upload' | 'mcp';

export interface Home {
  kind: HomeKind;
  id: string;
  node: string;
  keyId: string | null;
  createdAt: number;
}

export interface ClusterKey {
  id: string;
  name: string;
  hash: string;
  mask: string;
  createdAt: number;
}

/** One heartbeat: the node's capacity and what it says it runs (ids with their start times). */
export interface Heartbeat {
  name: string;
  url: string;
  slots: number;
  free: number;
  templates: string[];
  draining: boolean;
  sandboxes: Array<{ id: string; startedAt: number }>;
}

export interface HeartbeatReply {
  /** Sandboxes the node must remove: lost while it was away, or never acknowledged to a client. */
  kill: string[];
  /** Claims about sandboxes another node holds: ignored. */
  ignored: string[];
}

/** A claim or a placement younger than this is left alone: a create may be between the
 * node's reply and the API's insert of the placement. */
export const PLACEMENT_GRACE_MS = 30_000;

export type ClusterStore = Awaited<ReturnType<typeof openClusterStore>>;

interface NodeRow {
  name: string;
  url: string;
  state: string;
  slots: number;
  free: number;
  templates: string;
  last_seen: number;
  registered_at: number;
}
interface PlacementRow {
  id: string;
  node: string;
  key_id: string | null;
  template: string;
  state: string;
  created_at: number;
  envd_token: string | null;
}
interface HomeRow {
  kind: string;
  id: string;
  node: string;
  key_id: string | null;
  created_at: number;
}

const node = (r: NodeRow): NodeRecord => ({
  name: r.name,
  url: r.url,
  state: r.state as NodeState,
  slots: r.slots,
  free: r.free,
  templates: JSON.parse(r.templates) as string[],
  lastSeen: r.last_seen,
  registeredAt: r.registered_at,
});
const placement = (r: PlacementRow): Placement => ({
  id: r.id,
  node: r.node,
  keyId: r.key_id,
  template: r.template,
  state: r.state as Placement['state'],
  createdAt: r.created_at,
  envdToken: r.envd_token,
});
const home = (r: HomeRow): Home => ({
  kind: r.kind as HomeKind,
  id: r.id,
  node: r.node,
  keyId: r.key_id,
  createdAt: r.created_at,
});

/** Opens the store over an engine and applies the migrations it lacks. */
export async function openClusterStore(db: Db) {
  await migrate(db);
  return {
    db,

    async insertApiKey(k: ClusterKey): Promise<void> {
      const n = await db.run(
        'INSERT INTO api_keys (id, name, hash, mask, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
        [k.id, k.name, k.hash, k.mask, k.createdAt],
      );
      if (n === 0) throw new CoveError('already_exists', `API key ${k.id} already exists`);
    },
    async apiKeyByHash(hash: string): Promise<ClusterKey | undefined> {
      const rows = await db.query<ClusterKey & { created_at: number }>(
        'SELECT id, name, hash, mask, created_at FROM api_keys WHERE hash = ?',
        [hash],
      );
      const r = rows[0];
      return r && { id: r.id, name: r.name, hash: r.hash, mask: r.mask, createdAt: r.created_at };
    },
    async countApiKeys(): Promise<number> {
      const rows = await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM api_keys');
      return Number(rows[0]?.n ?? 0);
    },
    async deleteApiKey(id: string): Promise<boolean> {
      return (await db.run('DELETE FROM api_keys WHERE id = ?', [id])) > 0;
    },

    /**
     * Records a heartbeat and settles the node's claims against the placements, in one
     * transaction: a claim about a sandbox placed on another node is ignored (never trusted);
     * an unplaced claim older than the grace was never acknowledged and is to be killed; a
     * placement the node no longer claims has ended there and is removed; a lost one the node
     * still runs is to be killed, and once it stops claiming it, removed.
     */
    async heartbeat(h: Heartbeat, now: number, graceMs = PLACEMENT_GRACE_MS): Promise<HeartbeatReply> {
      return db.tx(async (tx) => {
        await tx.run(
          `INSERT INTO nodes (name, url, state, slots, free, templates, last_seen, registered_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET url = excluded.url,
             state = CASE WHEN nodes.drain = 1 THEN 'draining' ELSE excluded.state END, slots = excluded.slots,
             free = excluded.free, templates = excluded.templates, last_seen = excluded.last_seen`,
          [
            h.name,
            h.url,
            h.draining ? 'draining' : 'up',
            h.slots,
            h.free,
            JSON.stringify(h.templates),
            now,
            now,
          ],
        );
        const claimed = new Map(h.sandboxes.map((s) => [s.id, s.startedAt]));
        const ids = [...claimed.keys()];
        const known = new Map<string, PlacementRow>();
        for (let i = 0; i < ids.length; i += 500) {
          const chunk = ids.slice(i, i + 500);
          const rows = await tx.query<PlacementRow>(
            `SELECT * FROM placements WHERE id IN (${chunk.map(() => '?').join(', ')})`,
            chunk,
          );
          for (const r of rows) known.set(r.id, r);
        }
        const kill: string[] = [];
        const ignored: string[] = [];
        for (const [id, startedAt] of claimed) {
          const p = known.get(id);
          if (p === undefined) {
            if (startedAt < now - graceMs) kill.push(id);
          } else if (p.node !== h.name) ignored.push(id);
          else if (p.state === 'lost') kill.push(id);
        }
        const mine = await tx.query<PlacementRow>('SELECT * FROM placements WHERE node = ?', [h.name]);
        for (const p of mine)
          if (!claimed.has(p.id) && (p.state === 'lost' || p.created_at < now - graceMs))
            await tx.run('DELETE FROM placements WHERE id = ? AND node = ?', [p.id, h.name]);
        return { kill, ignored };
      });
    },

    async listNodes(): Promise<NodeRecord[]> {
      return (await db.query<NodeRow>('SELECT * FROM nodes ORDER BY name')).map(node);
    },
    async getNode(name: string): Promise<NodeRecord | undefined> {
      const rows = await db.query<NodeRow>('SELECT * FROM nodes WHERE name = ?', [name]);
      return rows[0] && node(rows[0]);
    },

    /** Nodes silent since before `staleBefore` become lost, and so do the sandboxes they ran.
     * Idempotent: replicas sweeping at once each mark a node at most once. Returns the names. */
    async markLost(staleBefore: number): Promise<string[]> {
      return db.tx(async (tx) => {
        const rows = await tx.query<{ name: string }>(
          `UPDATE nodes SET state = 'lost' WHERE state <> 'lost' AND last_seen < ? RETURNING name`,
          [staleBefore],
        );
        for (const { name } of rows)
          await tx.run(`UPDATE placements SET state = 'lost' WHERE node = ? AND state = 'running'`, [name]);
        return rows.map((r) => r.name);
      });
    },

    async insertPlacement(p: Placement): Promise<void> {
      const n = await db.run(
        'INSERT INTO placements (id, node, key_id, template, state, created_at, envd_token) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
        [p.id, p.node, p.keyId, p.template, p.state, p.createdAt, p.envdToken ?? null],
      );
      if (n === 0) throw new CoveError('already_exists', `sandbox ${p.id} is already placed`);
    },
    async getPlacement(id: string): Promise<Placement | undefined> {
      const rows = await db.query<PlacementRow>('SELECT * FROM placements WHERE id = ?', [id]);
      return rows[0] && placement(rows[0]);
    },
    async listPlacements(nodeName?: string): Promise<Placement[]> {
      const rows = nodeName
        ? await db.query<PlacementRow>('SELECT * FROM placements WHERE node = ? ORDER BY created_at, id', [
            nodeName,
          ])
        : await db.query<PlacementRow>('SELECT * FROM placements ORDER BY created_at, id');
      return rows.map(placement);
    },
    /** Only the owning node's placement: a stale route never removes another node's. */
    async deletePlacement(id: string, nodeName: string): Promise<boolean> {
      return (await db.run('DELETE FROM placements WHERE id = ? AND node = ?', [id, nodeName])) > 0;
    },

    /**
     * An operator's drain: the node takes no new sandboxes (placement skips all but `up`)
     * until undrained, whatever its heartbeats say. A lost node stays lost until it beats.
     * False when no such node is registered.
     */
    async setDrain(name: string, drain: boolean): Promise<boolean> {
      const n = await db.run(
        `UPDATE nodes SET drain = ?, state = CASE WHEN state = 'lost' THEN state WHEN ? = 1 THEN 'draining' ELSE 'up' END WHERE name = ?`,
        [drain ? 1 : 0, drain ? 1 : 0, name],
      );
      return n > 0;
    },

    /** Records (or moves) where a resource lives. */
    async setHome(h: Home): Promise<void> {
      await db.run(
        `INSERT INTO homes (kind, id, node, key_id, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (kind, id) DO UPDATE SET node = excluded.node, key_id = excluded.key_id, created_at = excluded.created_at`,
        [h.kind, h.id, h.node, h.keyId, h.createdAt],
      );
    },
    async getHome(kind: HomeKind, id: string): Promise<Home | undefined> {
      const rows = await db.query<HomeRow>('SELECT * FROM homes WHERE kind = ? AND id = ?', [kind, id]);
      return rows[0] && home(rows[0]);
    },
    async listHomes(kind: HomeKind): Promise<Home[]> {
      return (
        await db.query<HomeRow>('SELECT * FROM homes WHERE kind = ? ORDER BY created_at, id', [kind])
      ).map(home);
    },
    async deleteHome(kind: HomeKind, id: string): Promise<void> {
      await db.run('DELETE FROM homes WHERE kind = ? AND id = ?', [kind, id]);
    },

    close: () => db.close(),
  };
}
