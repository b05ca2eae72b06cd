/**
 * The thread that hashes uploads for the audit trail (sha256.ts): one `sha256` per stream id,
 * fed blocks of shared memory in order; each block goes back to its sender once hashed.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

export type ToWorker =
  | { op: 'update'; id: number; block: SharedArrayBuffer; start: number; length: number }
  | { op: 'digest'; id: number }
  | { op: 'drop'; id: number };

export type FromWorker =
  { op: 'free'; id: number; block: SharedArrayBuffer } | { op: 'digest'; id: number; hex: string };

const port = parentPort;
if (!port) throw new Error('sha256-worker.ts runs as a worker thread');
const hashes = new Map<number, Hash>();

port.on('message', (m: ToWorker) => {
  if (m.op === 'update') {
    let h = hashes.get(m.id);
    if (!h) hashes.set(m.id, (h = createHash('sha256')));
    h.update(new Uint8Array(m.block, m.start, m.length));
    port.postMessage({ op: 'free', id: m.id, block: m.block } satisfies FromWorker);
  } else if (m.op === 'digest') {
    const hex = (hashes.get(m.id) ?? createHash('sha256')).digest('hex');
    hashes.delete(m.id);
    port.postMessage({ op: 'digest', id: m.id, hex } satisfies FromWorker);
  } else {
    hashes.delete(m.id);
  }
});
