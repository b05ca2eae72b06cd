// The gateway daemon (started by cli.mjs): runs each configured stdio MCP server (upstream.mjs),
// and serves all their tools, named `<server>__<tool>`, over Streamable HTTP on 0.0.0.0:50005
// at /mcp, to callers with `Authorization: Bearer <GATEWAY_ACCESS_TOKEN>`. fd 3 tells cli.mjs
// "ready <names>" or the reason it could not start.
import { webcrypto, timingSafeEqual, createHash } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:http';

// Node 18 (Debian 12's) has no global `crypto`; the SDK's HTTP layer uses it.
if (!globalThis.crypto) globalThis.crypto = webcrypto;
const { Server } = await import('@modelcontextprotocol/sdk/server/index.js');
const { StreamableHTTPServerTransport } = await import('@modelcontextprotocol/sdk/server/streamableHttp.js');
const { CallToolRequestSchema, ListToolsRequestSchema } = await import('@modelcontextprotocol/sdk/types.js');
const { planServers } = await import('./config.mjs');
const { Upstream } = await import('./upstream.mjs');

const PORT = 50005;
const status = createWriteStream(null, { fd: 3 });
const digest = (s) => createHash('sha256').update(s).digest();
const token = digest(readFileSync('/etc/mcp-gateway/.token', 'utf8'));

let upstreams;
try {
  upstreams = planServers(JSON.parse(readFileSync('/etc/mcp-gateway/config.json', 'utf8'))).map(
    (p) => new Upstream(p),
  );
  for (const u of upstreams) await u.install();
  await Promise.all(upstreams.map((u) => u.start()));
  await new Promise((resolve, reject) => {
    const http = createServer(handle);
    http.once('error', reject);
    http.listen(PORT, '0.0.0.0', resolve);
  });
} catch (err) {
  console.error(`mcp-gateway: ${err.message}`);
  status.end(`${err.message}\n`, () => process.exit(1));
}
console.log(`mcp-gateway: serving ${upstreams.map((u) => u.key).join(', ')} on :${PORT}`);
status.end(`ready ${upstreams.map((u) => u.key).join(', ')}\n`);

function authorized(req) {
  const [scheme, value] = (req.headers.authorization ?? '').split(' ');
  return scheme?.toLowerCase() === 'bearer' && !!value && timingSafeEqual(digest(value), token);
}

/** One stateless MCP server per request (the SDK's stateless pattern): the upstreams are shared. */
async function handle(req, res) {
  const path = new URL(req.url ?? '/', 'http://gateway').pathname;
  if (path === '/health') return reply(res, 200, { servers: upstreams.map((u) => u.report()) });
  if (path !== '/mcp') return reply(res, 404, { error: 'not found: the MCP endpoint is /mcp' });
  if (!authorized(req)) {
    res.setHeader('www-authenticate', 'Bearer');
    return reply(res, 401, { error: 'a valid Authorization: Bearer <token> is required' });
  }
  const server = new Server({ name: 'cove-mcp-gateway', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: upstreams.flatMap((u) => u.listed()) }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const name = request.params.name;
    const upstream = upstreams.find((u) => name.startsWith(`${u.prefix}__`));
    if (!upstream) return toolError(`unknown tool ${name}`);
    return upstream.call(name.slice(upstream.prefix.length + 2), request.params.arguments, extra.signal);
  });
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  try {
    await server.connect(transport);
    await transport.handleRequest(req, res);
  } catch (err) {
    console.error('mcp-gateway: request failed:', err);
    if (!res.headersSent) reply(res, 500, { error: 'internal error' });
  }
}

function reply(res, code, body) {
  res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

export function toolError(text) {
  return { content: [{ type: 'text', text }], isError: true };
}
