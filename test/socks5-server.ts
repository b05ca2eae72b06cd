/**
 * A test-only SOCKS5 server (RFC 1928 CONNECT, RFC 1929 username/password) that egress tests
 * run inside the stand-in internet's namespace (netns-internet.ts), standing in for a user's
 * own egress proxy. It resolves domain names from the test names it is given (nothing else),
 * prints `ready` and then one JSON line per CONNECT it served or refused, and also serves a
 * server-speaks-first "banner" port for checking non-HTTP TCP. Usage:
 * `node socks5-server.ts <address> <port> <user> <password> <names json> <banner address:port>`.
 */
import { connect, createServer, isIPv4, type Socket } from 'node:net';

const [address, port, user, password, namesJson, banner] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string,
];
const names = JSON.parse(namesJson) as Record<string, string>;
const log = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`);

/** Reads exactly `n` bytes (or rejects when the socket ends first). */
function reader(socket: Socket) {
  let buffered = Buffer.alloc(0);
  let waiting: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    waiting?.();
  });
  return async (n: number): Promise<Buffer> => {
    while (buffered.length < n) {
      if (socket.destroyed || socket.readableEnded) throw new Error('closed');
      await new Promise<void>((resolve) => {
        waiting = resolve;
        socket.once('close', resolve);
      });
    }
    const out = buffered.subarray(0, n);
    buffered = buffered.subarray(n);
    return out;
  };
}

async function serve(client: Socket): Promise<void> {
  client.on('error', () => client.destroy());
  const read = reader(client);
  const [version, count] = await read(2);
  const methods = [...(await read(count!))];
  if (version !== 5 || !methods.includes(2)) {
    log({ refused: 'no username/password method', methods });
    return void client.end(Buffer.from([5, 0xff]));
  }
  client.write(Buffer.from([5, 2]));
  const [, ulen] = await read(2);
  const name = (await read(ulen!)).toString();
  const [plen] = await read(1);
  const pass = (await read(plen!)).toString();
  if (name !== user || pass !== password) {
    log({ refused: 'bad credentials', user: name });
    return void client.end(Buffer.from([1, 1]));
  }
  client.write(Buffer.from([1, 0]));
  const [, cmd, , atyp] = await read(4);
  let host: string;
  if (atyp === 1) host = [...(await read(4))].join('.');
  else if (atyp === 3) host = (await read((await read(1))[0]!)).toString();
  else return void client.end(Buffer.from([5, 8, 0, 1, 0, 0, 0, 0, 0, 0]));
  const dport = (await read(2)).readUInt16BE(0);
  const target = atyp === 1 ? host : names[host.toLowerCase()];
  log({ cmd, atyp: atyp === 1 ? 'ipv4' : 'domain', host, port: dport });
  if (cmd !== 1 || target === undefined || !isIPv4(target))
    return void client.end(Buffer.from([5, 4, 0, 1, 0, 0, 0, 0, 0, 0]));
  const upstream = connect({ host: target, port: dport });
  upstream.once('connect', () => {
    client.removeAllListeners('data');
    client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.on('error', () => client.end(Buffer.from([5, 5, 0, 1, 0, 0, 0, 0, 0, 0])));
  client.once('close', () => upstream.destroy());
}

const server = createServer((s) => void serve(s).catch(() => s.destroy()));
const [bannerHost, bannerPort] = banner.split(':') as [string, string];
const bannerServer = createServer((s) => s.end('banner from the far side\n'));
server.listen(Number(port), address, () =>
  bannerServer.listen(Number(bannerPort), bannerHost, () => process.stdout.write('ready\n')),
);
