import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { newToken } from '../core/ids.ts';
import { createSqliteStore } from '../store/sqlite.ts';
import type { SandboxRecord } from '../store/store.ts';
import { storeSealing, tokenSealer } from './sealed-tokens.ts';
import { onDisk, tempDatabases } from './sealed-db-testing.ts';

const record = (id: string): Omit<SandboxRecord, 'slot'> => ({
  id,
  templateName: 'base',
  templateHash: 'abc',
  state: 'running',
  agentToken: newToken(),
  envdAccessToken: newToken(),
  trafficAccessToken: newToken(),
  limits: { cpus: 1, memoryMiB: 256, pids: 64 },
  metadata: {},
  envVars: {},
  startedAt: 1,
  endAt: 2,
});
const tokensOf = (r: Pick<SandboxRecord, 'agentToken' | 'envdAccessToken' | 'trafficAccessToken'>) => [
  r.agentToken,
  r.envdAccessToken,
  r.trafficAccessToken,
];

describe('sandbox tokens in the state database', () => {
  const { dbPath, cleanup } = tempDatabases('cove-sealed-tokens-');
  afterEach(cleanup);

  it('are sealed when written, in clear when read, and never on disk', () => {
    const path = dbPath();
    const key = randomBytes(32);
    const store = createSqliteStore(
      path,
      storeSealing(key, () => {}),
    );
    const a = record('a');
    store.insertSandbox(a, 10);
    expect(tokensOf(store.getSandbox('a')!)).toEqual(tokensOf(a));
    const envd = newToken();
    const traffic = newToken();
    store.updateSandbox('a', { envdAccessToken: envd, trafficAccessToken: traffic });
    expect(tokensOf(store.listSandboxes()[0]!)).toEqual([a.agentToken, envd, traffic]);
    store.close();
    for (const token of [...tokensOf(a), envd, traffic]) expect(onDisk(path, token!)).toBe(false);

    // without the key (a copy of the file, or `cove keys`): no token, only what was sealed
    const bare = createSqliteStore(path);
    expect(tokensOf(bare.getSandbox('a')!).every((t) => t?.startsWith('v1.'))).toBe(true);
    bare.close();
    // another key: tokens nobody holds, with a warning, the record itself still read
    const warnings: string[] = [];
    const other = createSqliteStore(path, { tokens: tokenSealer(randomBytes(32), (m) => warnings.push(m)) });
    const read = tokensOf(other.getSandbox('a')!);
    expect(read.every((t) => /^[0-9a-f]{64}$/.test(t!))).toBe(true);
    expect(read).not.toContain(a.agentToken);
    expect(read).not.toContain(envd);
    expect(warnings.join()).toMatch(/cannot be opened/);
    other.close();
  });

  it('are sealed at open where an older Cove left them in clear, deleted rows included', () => {
    const path = dbPath();
    const old = createSqliteStore(path);
    const kept = record('kept');
    const gone = record('gone');
    old.insertSandbox(kept, 10);
    old.insertSandbox(gone, 10);
    old.deleteSandbox('gone');
    old.close();
    expect(onDisk(path, kept.agentToken)).toBe(true); // what the migration is for

    const key = randomBytes(32);
    const store = createSqliteStore(
      path,
      storeSealing(key, () => {}),
    );
    expect(tokensOf(store.getSandbox('kept')!)).toEqual(tokensOf(kept));
    store.close();
    for (const token of [...tokensOf(kept), ...tokensOf(gone)]) expect(onDisk(path, token!)).toBe(false);
    // a second open has nothing left to seal (nothing sealed twice), and reads the same
    const again = createSqliteStore(
      path,
      storeSealing(key, () => {}),
    );
    expect(tokensOf(again.getSandbox('kept')!)).toEqual(tokensOf(kept));
    again.close();
  });
});
