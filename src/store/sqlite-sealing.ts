import type { DatabaseSync } from 'node:sqlite';
import type { SandboxNetwork } from '../network/egress-policy.ts';

/**
 * How the `network` column is written and read (main.ts: src/secrets/sealed-network.ts seals
 * the upstream proxy's password). `seal` returns its argument itself when it has nothing to seal.
 */
export interface NetworkCodec {
  seal(network: SandboxNetwork): SandboxNetwork;
  open(stored: SandboxNetwork): SandboxNetwork;
}

/**
 * How a sandbox's tokens (agent, envd access, traffic access) are written and read
 * (src/secrets/sealed-tokens.ts). `seal` returns its argument itself when it is sealed
 * already; `open` returns one in clear (a row of an older Cove) as it is.
 */
export interface TokenCodec {
  seal(token: string): string;
  open(stored: string): string;
}

/** What the SQLite store seals at rest; without a codec, that column is kept as given. */
export interface StoreCodecs {
  network?: NetworkCodec;
  tokens?: TokenCodec;
}

/** The columns of `sandboxes` that hold a token (sqlite.ts). */
const tokenColumns = ['agent_token', 'envd_access_token', 'traffic_access_token'] as const;
type StoredRow = { id: string; network: string | null } & Record<
  (typeof tokenColumns)[number],
  string | null
>;

/**
 * Seals what rows of an older Cove hold in clear. secure_delete zeroes what a write frees
 * (here and from now on), VACUUM rewrites the file without the old pages (rows of sandboxes
 * deleted before held their secrets too), and the checkpoint empties the WAL of them.
 */
export function sealOldRows(db: DatabaseSync, codecs: StoreCodecs): void {
  const { network, tokens } = codecs;
  if (!network && !tokens) return;
  db.exec('PRAGMA secure_delete = ON');
  const update = db.prepare(
    `UPDATE sandboxes SET network = ?, ${tokenColumns.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`,
  );
  let changed = 0;
  db.exec('BEGIN IMMEDIATE'); // the rows read are the rows written
  try {
    const rows = db.prepare(`SELECT id, network, ${tokenColumns.join(', ')} FROM sandboxes`).all();
    for (const row of rows as StoredRow[]) {
      let sealedNetwork = row.network;
      if (network && row.network !== null) {
        const stored = JSON.parse(row.network) as SandboxNetwork;
        const sealed = network.seal(stored);
        if (sealed !== stored) sealedNetwork = JSON.stringify(sealed);
      }
      const sealedTokens = tokenColumns.map((c) => {
        const value = row[c];
        return tokens && value !== null ? tokens.seal(value) : value;
      });
      if (sealedNetwork === row.network && sealedTokens.every((v, i) => v === row[tokenColumns[i]!]))
        continue;
      changed += Number(update.run(sealedNetwork, ...sealedTokens, row.id).changes);
    }
    db.exec('COMMIT');
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
  if (changed === 0) return;
  db.exec('VACUUM');
  db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
}
