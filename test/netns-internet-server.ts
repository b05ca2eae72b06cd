/**
 * The stand-in internet's servers, run by netns-internet.ts inside its network namespace:
 * HTTP on :80 and HTTPS on :443 on every address there (each answers with the address and
 * Host it was reached at; under /headers, the request's headers too; WebSockets on /ws,
 * websocket-echo.ts), and a DNS server that
 * knows only the test names. Usage:
 * `node netns-internet-server.ts <dir with cert.pem, key.pem> <dns address> <names json>`.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { join } from 'node:path';
import { websocketEcho } from './websocket-echo.ts';

const [dir, dnsAddress, namesJson] = process.argv.slice(2) as [string, string, string];
const names = JSON.parse(namesJson) as Record<string, string>;

function answer(req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  const echo = { address: req.socket.localAddress, host: req.headers.host ?? '' };
  res.end(JSON.stringify(req.url?.startsWith('/headers') ? { ...echo, headers: req.headers } : echo));
}

const http = createServer(answer).on('upgrade', websocketEcho).listen(80, '0.0.0.0');
const https = createTlsServer(
  { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) },
  answer,
)
  .on('upgrade', websocketEcho)
  .listen(443, '0.0.0.0');

// DNS: A records for the test names; NOERROR without answers for other types of a known
// name; NXDOMAIN for everything else. Queries carry one question (RFC 1035 §4.1).
const dns = createSocket('udp4');
dns.on('message', (query, from) => {
  if (query.length < 17) return;
  let p = 12;
  const labels: string[] = [];
  while (p < query.length && query[p]! > 0 && query[p]! < 64) {
    labels.push(query.toString('latin1', p + 1, p + 1 + query[p]!));
    p += query[p]! + 1;
  }
  p += 1;
  if (p + 4 > query.length) return;
  const type = query.readUInt16BE(p);
  p += 4;
  const address = names[labels.join('.').toLowerCase()];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(address === undefined ? 0x8183 : 0x8180, 2); // response, RD, RA; NXDOMAIN
  header.writeUInt16BE(1, 4);
  const answers: Buffer[] = [];
  if (address !== undefined && type === 1) {
    const a = Buffer.alloc(16);
    a.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    a.writeUInt16BE(1, 2); // A
    a.writeUInt16BE(1, 4); // IN
    a.writeUInt32BE(60, 6);
    a.writeUInt16BE(4, 10);
    address.split('.').forEach((o, i) => a.writeUInt8(Number(o), 12 + i));
    answers.push(a);
  }
  header.writeUInt16BE(answers.length, 6);
  dns.send(Buffer.concat([header, query.subarray(12, p), ...answers]), from.port, from.address);
});
dns.bind(53, dnsAddress, () => {
  Promise.all([http, https].map((s) => new Promise((r) => (s.listening ? r(0) : s.once('listening', r)))))
    .then(() => process.stdout.write('ready\n'))
    .catch(() => process.exit(1));
});
