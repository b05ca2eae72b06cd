import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { EgressPolicy } from './egress-policy.ts';
import { startEgressProxy, type EgressProxy } from './egress-proxy.ts';

/** A DNS server on the loopback that answers every A question with 127.0.0.1. */
async function loopbackDns(): Promise<{ address: string; close(): void }> {
  const server = createSocket('udp4');
  server.on('message', (q, from) => {
    const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    const head = Buffer.from(q.subarray(0, 12));
    head.writeUInt16BE(0x8180, 2);
    head.writeUInt16BE(1, 6);
    server.send(Buffer.concat([head, q.subarray(12), answer]), from.port, from.address);
  });
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', r));
  return { address: `127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** Sends `bytes` to the proxy's port and resolves with how the connection ended. */
function attempt(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => s.write(bytes));
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    s.on('close', () => resolve('closed'));
  });
}

describe('egress proxy (on the loopback, no root)', () => {
  let proxy: EgressProxy | undefined;
  let dns: { address: string; close(): void } | undefined;
  afterEach(async () => {
    await proxy?.close();
    dns?.close();
  });

  it('resets what is not allowed, and an allowed name that resolves to the host', async () => {
    dns = await loopbackDns();
    const policy: EgressPolicy = {
      allowCidrs: [],
      denyCidrs: ['0.0.0.0/0'],
      allowDomains: ['ok.test'],
      rules: {},
    };
    proxy = await startEgressProxy({
      address: '127.0.0.1',
      policyOf: (a) => (a === '127.0.0.1' ? policy : undefined),
      dns: [dns.address],
    });
    const get = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    expect(await attempt(proxy.ports.http, get('other.test'))).toBe('ECONNRESET');
    expect(await attempt(proxy.ports.http, get('ok.test'))).toBe('ECONNRESET'); // 127.0.0.1: never
    expect(await attempt(proxy.ports.http, 'not http\r\n\r\n')).toBe('ECONNRESET');
    expect(await attempt(proxy.ports.tls, get('ok.test'))).toBe('ECONNRESET'); // no ClientHello
  });

  it('relays DNS for sandboxes with a policy, and ignores other sources', async () => {
    dns = await loopbackDns();
    let known = true;
    const policy: EgressPolicy = { allowCidrs: [], denyCidrs: ['1.2.3.4/32'], allowDomains: [], rules: {} };
    proxy = await startEgressProxy({
      address: '127.0.0.1',
      policyOf: () => (known ? policy : undefined),
      dns: [dns.address],
    });
    const query = Buffer.from('abcd0100000100000000000002686903746573740000010001', 'hex');
    const ask = (waitMs: number) =>
      new Promise<Buffer | undefined>((resolve) => {
        const c = createSocket('udp4');
        const timer = setTimeout(() => (c.close(), resolve(undefined)), waitMs);
        c.once('message', (m) => (clearTimeout(timer), c.close(), resolve(m)));
        c.send(query, proxy!.ports.dns, '127.0.0.1');
      });
    const answer = await ask(10_000);
    expect(answer?.readUInt16BE(0)).toBe(0xabcd);
    expect([...answer!.subarray(-4)]).toEqual([127, 0, 0, 1]);
    known = false;
    expect(await ask(500)).toBeUndefined(); // nothing comes back
  });
});
