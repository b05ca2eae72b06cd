import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadEgressCa } from './egress-ca.ts';
import { scratchDir } from '../../test/scratch.ts';

describe('egress CA', () => {
  it('is made once per home and signs leaves for a name, cached', async () => {
    const dir = join(scratchDir('cove-ca-'), 'egress-ca');
    const ca = await loadEgressCa(dir, 'unit');
    expect((await loadEgressCa(dir, 'unit')).certPem).toBe(ca.certPem);
    const root = new X509Certificate(ca.certPem);
    expect(root.ca).toBe(true);
    const leaf = await ca.leaf('api.example.com');
    const cert = new X509Certificate(leaf.cert);
    expect(cert.verify(root.publicKey)).toBe(true);
    expect(cert.checkIssued(root)).toBe(true);
    expect(cert.checkHost('api.example.com')).toBe('api.example.com');
    expect(cert.checkHost('other.example.com')).toBeUndefined();
    expect(cert.ca).toBe(false);
    expect(await ca.leaf('api.example.com')).toEqual(leaf);
  });
});
