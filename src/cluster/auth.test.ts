import { describe, expect, it } from 'vitest';
import { NODE_NAME, nodeSecret, sign, verify } from './auth.ts';

describe('cluster tokens', () => {
  const a = nodeSecret('cluster-secret', 'a');
  const b = nodeSecret('cluster-secret', 'b');

  it('verify what was signed for the same node and purpose, with its claims', () => {
    expect(verify(a, 'api-to-node', sign(a, 'api-to-node', { keyId: 'k1' }))).toEqual({ keyId: 'k1' });
  });

  it('refuse another node’s secret, the other purpose, expired, altered and malformed tokens', () => {
    const token = sign(a, 'node-to-api', { node: 'a' });
    expect(verify(b, 'node-to-api', token)).toBeUndefined();
    expect(verify(a, 'api-to-node', token)).toBeUndefined();
    expect(verify(a, 'node-to-api', token, Date.now() + 61_000)).toBeUndefined();
    const [v, body, mac] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ node: 'b', exp: Date.now() + 60_000 })).toString('base64url');
    expect(verify(a, 'node-to-api', `${v}.${forged}.${mac}`)).toBeUndefined();
    expect(verify(a, 'node-to-api', `${v}.${body}`)).toBeUndefined();
    expect(verify(a, 'node-to-api', undefined)).toBeUndefined();
    expect(verify(a, 'node-to-api', 'v1.%%%.x')).toBeUndefined();
  });

  it('take node names as Kubernetes spells them (DNS subdomains), nothing else', () => {
    for (const ok of ['n0', 'host-a', 'ip-10-0-0-5.ec2.internal']) expect(NODE_NAME.test(ok), ok).toBe(true);
    for (const bad of ['', 'A', '-x', 'x.', 'a/b', 'a_b', 'a'.repeat(254)])
      expect(NODE_NAME.test(bad), bad).toBe(false);
  });
});
