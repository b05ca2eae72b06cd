import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { SandboxNetwork } from '../network/egress-policy.ts';
import { createSqliteStore } from '../store/sqlite.ts';
import type { SandboxRecord } from '../store/store.ts';
import { networkSealer } from './sealed-network.ts';
import { onDisk, tempDatabases } from './sealed-db-testing.ts';

const network = (password: string): SandboxNetwork => ({
  allowOut: [],
  denyOut: [],
  allowInternetAccess: true,
  allowPublicTraffic: true,
  httpsPorts: [],
  egressProxy: { address: 'proxy.test:1080', username: 'sbx', password },
});
const record = (id: string, password: string): Omit<SandboxRecord, 'slot'> => ({
  id,
  templateName: 'base',
  templateHash: 'abc',
  state: 'running',
  agentToken: 't',
  limits: { cpus: 1, memoryMiB: 256, pids: 64 },
  metadata: {},
  envVars: {},
  startedAt: 1,
  endAt: 2,
  network: network(password),
});

describe('the upstream proxy password in the state database', () => {
  const { dbPath, cleanup } = tempDatabases('cove-sealed-');
  afterEach(cleanup);

  it('is sealed when written, in clear when read, and never on disk', () => {
    const path = dbPath();
    const key = randomBytes(32);
    const store = createSqliteStore(path, { network: networkSealer(key) });
    store.insertSandbox(record('a', 'first-password-1d9c'), 10);
    expect(store.getSandbox('a')?.network?.egressProxy).toEqual({
      address: 'proxy.test:1080',
      username: 'sbx',
      password: 'first-password-1d9c',
    });
    store.updateSandbox('a', { network: network('second-password-77e1') });
    expect(store.listSandboxes()[0]?.network?.egressProxy?.password).toBe('second-password-77e1');
    store.close();
    expect(onDisk(path, 'first-password-1d9c')).toBe(false);
    expect(onDisk(path, 'second-password-77e1')).toBe(false);
    // without the key (a copy of the file, or `cove keys`): no password at all
    const bare = createSqliteStore(path);
    expect(bare.getSandbox('a')?.network?.egressProxy?.password).toBeUndefined();
    bare.close();
    // another key: dropped with a warning, the record itself still read
    const warnings: string[] = [];
    const other = createSqliteStore(path, {
      network: networkSealer(randomBytes(32), (m) => warnings.push(m)),
    });
    expect(other.getSandbox('a')?.network?.egressProxy).toEqual({
      address: 'proxy.test:1080',
      username: 'sbx',
    });
    expect(warnings.join()).toMatch(/cannot be opened/);
    other.close();
  });

  it('seals what an older Cove left in clear, deleted rows included, at open', () => {
    const path = dbPath();
    const old = createSqliteStore(path);
    old.insertSandbox(record('kept', 'kept-password-5b2a'), 10);
    old.insertSandbox(record('gone', 'gone-password-c4f0'), 10);
    old.deleteSandbox('gone');
    old.close();
    expect(onDisk(path, 'kept-password-5b2a')).toBe(true); // what the migration is for

    const key = randomBytes(32);
    const store = createSqliteStore(path, { network: networkSealer(key) });
    expect(store.getSandbox('kept')?.network?.egressProxy?.password).toBe('kept-password-5b2a');
    store.close();
    expect(onDisk(path, 'kept-password-5b2a')).toBe(false);
    expect(onDisk(path, 'gone-password-c4f0')).toBe(false);
    // a second open has nothing left to seal, and reads the same
    const again = createSqliteStore(path, { network: networkSealer(key) });
    expect(again.getSandbox('kept')?.network?.egressProxy?.password).toBe('kept-password-5b2a');
    again.close();
  });
});
