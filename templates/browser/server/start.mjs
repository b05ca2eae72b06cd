// The browser template's server (template.json `start`), run by Debian's Node 18 inside the
// sandbox: starts headless Chromium with a fresh profile and its DevTools endpoint on loopback
// port 9223, then serves that endpoint on port 9222 of every address, so that Cove's port proxy
// (which connects to the sandbox's address) reaches it at `getHost(9222)`.
//
// Why a forwarder: Chromium binds DevTools to 127.0.0.1 whatever --remote-debugging-address
// says, and refuses any request whose Host header is neither an IP address nor localhost
// (DNS-rebinding protection), which `9222-<id>.<domain>` is not. So each request reaches
// Chromium with `Host: 127.0.0.1:9223`, and the WebSocket URLs in /json answers are rewritten
// back to the host the client used (wss:// when it came over HTTPS), as CDP clients
// (Playwright's connectOverCDP, Puppeteer's connect) then open them.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PUBLIC_PORT = 9222;
const CDP_PORT = 9223;
const CDP_HOST = `127.0.0.1:${CDP_PORT}`;

// Each flag with its reason: the sandbox is the boundary, and the browser calls no one by
// itself (most of these are Playwright's own defaults for the same reason).
const FLAGS = [
  '--headless', // no display in this template
  '--no-sandbox', // Chromium's sandbox needs a nested user namespace, which Cove's seccomp denies
  '--disable-dev-shm-usage', // /dev/shm is 64 MiB in a sandbox
  `--remote-debugging-port=${CDP_PORT}`,
  '--remote-debugging-address=127.0.0.1', // only the forwarder below reaches it
  '--disable-background-networking', // no variations, safe-browsing lists, translate ranking...
  '--disable-component-update', // no component downloads
  '--disable-default-apps',
  '--disable-domain-reliability', // no reliability beacons to Google
  '--disable-client-side-phishing-detection', // no phishing model downloads
  '--disable-sync',
  '--disable-breakpad', // no crash reports
  '--disable-field-trial-config', // no field trials from the built-in config
  '--metrics-recording-only', // metrics never uploaded
  '--no-pings', // no hyperlink auditing pings
  '--no-first-run',
  '--no-default-browser-check',
  '--no-service-autorun',
  '--password-store=basic', // no keyring daemon
  '--disable-search-engine-choice-screen',
  '--mute-audio',
  '--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,NetworkTimeServiceQuerying,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater,AutofillServerCommunication,PreconnectToSearch,AimEnabled',
];

// A fresh profile for every sandbox: each has its own /tmp, and this directory is new.
const profile = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
const chromium = spawn('/usr/bin/chromium', [...FLAGS, `--user-data-dir=${profile}`, 'about:blank'], {
  stdio: ['ignore', 'inherit', 'pipe'],
});
chromium.on('exit', (code, signal) => {
  console.error(`chromium exited (${signal ?? code})`);
  process.exit(code === 0 ? 1 : (code ?? 1));
});

// Chromium prints this line once DevTools accepts connections: only then is 9222 opened, so
// that the manager's readiness probe means "CDP answers".
let stderrTail = '';
chromium.stderr.on('data', (chunk) => {
  process.stderr.write(chunk);
  if (server.listening) return;
  stderrTail = (stderrTail + chunk.toString('utf8')).slice(-4096);
  if (stderrTail.includes('DevTools listening on ')) server.listen(PUBLIC_PORT, '0.0.0.0');
});

/** The address the client used: its Host header as given to the gateway. */
function publicHost(req) {
  return typeof req.headers.host === 'string' && req.headers.host !== '' ? req.headers.host : CDP_HOST;
}

function upstreamHeaders(req) {
  return { ...req.headers, host: CDP_HOST };
}

const server = createServer((req, res) => {
  const up = request(
    { host: '127.0.0.1', port: CDP_PORT, method: req.method, path: req.url, headers: upstreamHeaders(req) },
    (ures) => {
      if (!req.url?.startsWith('/json')) {
        res.writeHead(ures.statusCode ?? 502, ures.headers);
        ures.pipe(res);
        return;
      }
      // /json, /json/version, /json/list, /json/new: small JSON bodies naming ws:// URLs.
      const chunks = [];
      ures.on('data', (c) => chunks.push(c));
      ures.on('end', () => {
        const https = req.headers['x-forwarded-proto'] === 'https';
        const body = Buffer.from(
          Buffer.concat(chunks)
            .toString('utf8')
            .replaceAll(`ws://${CDP_HOST}`, `${https ? 'wss' : 'ws'}://${publicHost(req)}`)
            .replaceAll(`ws=${CDP_HOST}`, `${https ? 'wss' : 'ws'}=${publicHost(req)}`),
        );
        const headers = { ...ures.headers, 'content-length': String(body.length) };
        res.writeHead(ures.statusCode ?? 502, headers);
        res.end(body);
      });
    },
  );
  up.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(up);
});

// WebSocket upgrades: the request head is rewritten (Host) and replayed to Chromium, then both
// sockets are joined byte for byte.
server.on('upgrade', (req, socket, head) => {
  const up = connect(CDP_PORT, '127.0.0.1', () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i];
      lines.push(`${name}: ${name.toLowerCase() === 'host' ? CDP_HOST : req.rawHeaders[i + 1]}`);
    }
    up.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  const close = () => {
    up.destroy();
    socket.destroy();
  };
  up.on('error', close);
  socket.on('error', close);
  up.on('close', close);
  socket.on('close', close);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    chromium.kill('SIGTERM');
    process.exit(0);
  });
}
