import type { Sandbox } from 'e2b';

/**
 * A process whose state lives only in its memory: a number drawn at start, written to
 * /tmp/told on SIGUSR1 (no file holds it before). A sandbox restored from a memory image
 * (pause, fork, snapshot) tells the same number; one booted fresh has no such process.
 */
export const HOLDER = `import random, signal, time
value = random.getrandbits(64)
def tell(*_):
    open('/tmp/told', 'w').write(str(value))
signal.signal(signal.SIGUSR1, tell)
open('/tmp/holder-ready', 'w').close()
while True:
    time.sleep(3600)
`;

/**
 * The holder, also holding a TCP connection to itself over the loopback: after /tmp/go
 * appears it sends over it and writes what arrived to /tmp/got (a VM's pause keeps it).
 */
export const CONNECTED_HOLDER = `import os, random, signal, socket, time
value = random.getrandbits(64)
def tell(*_):
    open('/tmp/told', 'w').write(str(value))
signal.signal(signal.SIGUSR1, tell)
server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen(1)
client = socket.create_connection(server.getsockname()); accepted, _ = server.accept()
open('/tmp/holder-ready', 'w').close()
while not os.path.exists('/tmp/go'):
    time.sleep(0.2)
client.sendall(b'still connected'); open('/tmp/got', 'w').write(accepted.recv(64).decode())
while True:
    time.sleep(3600)
`;

/** Starts `script` (a holder) in the background and waits until it is ready; its pid. */
export async function startHolder(sbx: Sandbox, script = HOLDER): Promise<number> {
  await sbx.files.write('/home/user/holder.py', script);
  const { pid } = await sbx.commands.run('python3 /home/user/holder.py', { background: true });
  await sbx.commands.run('for i in $(seq 600); do [ -e /tmp/holder-ready ] && break; sleep 0.1; done');
  return pid;
}

/** What the holder remembers, asked by signal. */
export async function told(sbx: Sandbox): Promise<string> {
  await sbx.commands.run(
    'rm -f /tmp/told; pkill -USR1 -f ^python3.*holde[r]; for i in $(seq 100); do [ -s /tmp/told ] && break; sleep 0.1; done',
  );
  return (await sbx.commands.run('cat /tmp/told')).stdout;
}

/**
 * A sandbox of `base` (for 10 min) with /home/user/file.txt saying 'before' and the holder
 * running: what the memory tests save and restore.
 */
export async function holdingSandbox(e2b: {
  Sandbox: typeof Sandbox;
}): Promise<{ sbx: Sandbox; holderPid: number; value: string }> {
  const sbx = await e2b.Sandbox.create('base', { timeoutMs: 600_000 });
  await sbx.files.write('/home/user/file.txt', 'before');
  const holderPid = await startHolder(sbx);
  const value = await told(sbx);
  if (!/^\d+$/.test(value)) throw new Error(`the holder told ${JSON.stringify(value)}, not a number`);
  return { sbx, holderPid, value };
}
