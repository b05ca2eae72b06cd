/**
 * connectAgent: dial the agent's socket (retrying while it starts), authenticate, and wrap the
 * connection in the AgentClient API.
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoveError } from '../core/errors.ts';
import { Connection } from './connection.ts';
import * as files from './files.ts';
import type { HostFiles } from './host-files.ts';
import { openProcess, encodeSpawn, readProcEntry } from './process.ts';
import { FrameDecoder, MAX_FRAME, PROTO_OLDEST, PROTO_VERSION, R, Reader, T, Writer } from './protocol.ts';
import type { AgentClient, AgentProcess, ProcessEntry, ProcessHandlers } from './types.ts';

export type * from './types.ts';

const MAX_PROCS_LISTED = 4096;

export interface ConnectOptions {
  timeoutMs?: number;
  /** The agent's files are reachable from here (crun): file bytes skip the agent. */
  host?: HostFiles;
}

function createClient(conn: Connection, host?: HostFiles): AgentClient {
  return {
    spawn: (opts, handlers) =>
      openProcess(conn, T.SPAWN, encodeSpawn(opts), `spawn ${opts.argv[0]}`, handlers),
    attach(pid: number, handlers: ProcessHandlers): Promise<AgentProcess> {
      if (!Number.isInteger(pid) || pid < 1 || pid > 0xffffffff) {
        return Promise.reject(new CoveError('invalid_argument', `bad pid ${pid}`));
      }
      return openProcess(conn, T.ATTACH, new Writer().u32(pid), `attach ${pid}`, handlers, pid);
    },
    listProcesses(): Promise<ProcessEntry[]> {
      const out: ProcessEntry[] = [];
      return new Promise((resolve, reject) => {
        conn.open(T.LIST_PROCS, new Writer(), {
          what: 'list processes',
          frame: (t, r) => {
            if (t === R.OK) {
              r.done();
              resolve(out);
              return true;
            }
            if (t !== R.PROC || out.length >= MAX_PROCS_LISTED) throw new Error('list processes: bad frame');
            out.push(readProcEntry(r));
            return false;
          },
          fail: reject,
        });
      });
    },
    stat: (path, user) => call(() => files.stat(conn, path, user)),
    list: (path, depth, user) => call(() => files.list(conn, path, depth, user)),
    mkdir: (path, user) => call(() => files.mkdir(conn, path, user)),
    rename: (from, to, user) => call(() => files.rename(conn, from, to, user)),
    remove: (path, user) => call(() => files.remove(conn, path, user)),
    readFile: (path, user) => files.readFile(conn, path, user, host),
    writeFile: (path, data, user) => call(() => files.writeFile(conn, path, data, user, host)),
    setMetadata: (path, metadata, user) => call(() => files.setMetadata(conn, path, metadata, user)),
    watch: (path, opts, user) => call(() => files.watch(conn, path, opts.recursive, user)),
    ping: () => call(() => conn.unary(T.PING, new Writer(), 'ping', (r) => r.done())),
    close: () => conn.fail(new CoveError('unavailable', 'agent client closed')),
    closed: conn.closed,
  };
}

/** Turns synchronous validation errors into rejections, so every method only ever rejects. */
function call<V>(fn: () => Promise<V>): Promise<V> {
  try {
    return fn();
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

/**
 * Every agent socket is read into this one buffer: 'data' listeners get a view of it that is
 * only valid during the call (FrameDecoder copies what it keeps). A read then moves up to
 * 256 KiB (a bulk transfer's CHUNKs, several at once) without Node allocating a fresh 64 KiB
 * buffer per read: at file-transfer rates those allocations cost more in garbage collection
 * than the copies. One buffer serves all connections: each read is consumed synchronously.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

function dial(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({
      path,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array): boolean => {
          s.emit('data', Buffer.from(buf.buffer, buf.byteOffset, n));
          return true;
        },
      },
    });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/**
 * Sends AUTH and waits for its OK (the agent sends nothing else after it before our first
 * request); resolves with the agent's protocol version.
 */
function authenticate(s: Socket, token: string, deadline: number): Promise<number> {
  const tok = Buffer.from(token, 'utf8');
  if (tok.length < 1 || tok.length > 256)
    throw new CoveError('invalid_argument', 'token must be 1..256 bytes');
  return new Promise((resolve, reject) => {
    const decoder = new FrameDecoder();
    const fail = (err: CoveError): void => {
      cleanup();
      s.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      try {
        // The answer is the first frame with id 0. On a microVM's port (one byte stream for
        // successive hosts) frames of an old host's requests may come before it (agent/src/port.c).
        const first = decoder.push(chunk).find((f) => f.id === 0);
        if (!first) return;
        const r = new Reader(first.payload);
        if (first.type !== R.OK || first.id !== 0) throw new Error('bad AUTH reply');
        const version = r.u32();
        const maxFrame = r.u32();
        r.u32(); // the agent's pid in its namespace: informative only
        r.done();
        if (version < PROTO_OLDEST || version > PROTO_VERSION || maxFrame !== MAX_FRAME)
          throw new Error(`agent protocol ${version}`);
        cleanup();
        resolve(version);
      } catch (err) {
        fail(new CoveError('unavailable', `agent handshake failed: ${(err as Error).message}`));
      }
    };
    const onClose = (): void =>
      fail(new CoveError('unauthenticated', 'agent closed the connection: wrong token?'));
    const timer = setTimeout(
      () => fail(new CoveError('deadline_exceeded', 'agent did not answer AUTH')),
      Math.max(deadline - Date.now(), 1),
    );
    const cleanup = (): void => {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      s.off('error', onClose);
    };
    s.on('data', onData);
    s.on('close', onClose);
    s.on('error', onClose);
    s.write(new Writer().bytes(tok).frame(T.AUTH, 0));
  });
}

/**
 * Connects to the agent listening on socketPath and authenticates with token. While the socket
 * does not exist or refuses (the agent is starting), retries until timeoutMs (default 5000).
 */
export async function connectAgent(
  socketPath: string,
  token: string,
  opts?: ConnectOptions,
): Promise<AgentClient> {
  const deadline = Date.now() + (opts?.timeoutMs ?? 5000);
  // The agent is usually listening 1-3 ms after `crun start`: poll every millisecond for the
  // first ~30 ms (doubling from the start overshot a 3 ms start by up to 4 ms: 1+2+4), then back off.
  let delay = 1;
  let attempts = 0;
  for (;;) {
    let s: Socket;
    try {
      s = await dial(socketPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOENT' || code === 'ECONNREFUSED') && Date.now() + delay < deadline) {
        await sleep(delay);
        if (++attempts >= 30) delay = Math.min(delay * 2, 100);
        continue;
      }
      throw new CoveError('unavailable', `cannot connect to agent at ${socketPath}: ${code ?? String(err)}`, {
        cause: err,
      });
    }
    s.setNoDelay?.(true);
    const version = await authenticate(s, token, deadline);
    // An agent older than DIRECT (a sandbox from before an upgrade) gets every byte itself.
    return createClient(new Connection(s), version >= 2 ? opts?.host : undefined);
  }
}
