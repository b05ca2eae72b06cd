import { webcrypto, X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
// @peculiar/x509 resolves its parsers through tsyringe, which needs this polyfill loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

/**
 * The instance's egress certificate authority: what the egress proxy signs the certificates
 * it presents with when it terminates a sandbox's TLS to a domain that has header rules
 * (egress-intercept.ts). Every sandbox trusts it (its CA bundle gets the certificate at
 * create, manager/host.ts), as E2B's envd gets a `caBundle`. Made once per instance home
 * (`<home>/egress-ca/`, key mode 0600) and kept across restarts, so sandboxes that outlive a
 * restart keep trusting it. Leaf certificates are minted per server name on first use and
 * kept in memory; they share one key, made at each start: minting is then one signature.
 * ECDSA P-256 throughout (WebCrypto: fast to make, accepted by every TLS client).
 */
export interface EgressCa {
  /** The CA certificate (PEM), for sandboxes' trust stores. */
  readonly certPem: string;
  /** A certificate for `name` (PEM) and its key (PKCS#8 PEM), signed by the CA. */
  leaf(name: string): Promise<{ cert: string; key: string }>;
}

type CryptoKey = webcrypto.CryptoKey;
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
/** Leaves live a week and are minted again a day before they expire; the cache is bounded. */
const LEAF_DAYS = 7;
const MAX_LEAVES = 4096;

export async function loadEgressCa(dir: string, instance: string): Promise<EgressCa> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, 'ca.pem');
  const keyFile = join(dir, 'ca-key.pem');
  let certPem = await readFile(certFile, 'utf8').catch(() => undefined);
  let keyPem = await readFile(keyFile, 'utf8').catch(() => undefined);
  if (!certPem || !keyPem || new X509Certificate(certPem).validToDate.getTime() < Date.now() + 30 * DAY) {
    ({ certPem, keyPem } = await makeCa(instance));
    // The key first, each by rename: a crash leaves either the old pair or a new key that the
    // next start replaces with another pair, never a certificate without its key.
    await writeAtomic(keyFile, keyPem, 0o600);
    await writeAtomic(certFile, certPem, 0o644);
  }
  const caCert = new x509.X509Certificate(certPem);
  const caKey = await importKey(keyPem);
  const leafKeys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const leafKeyPem = toPem(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey), 'PRIVATE KEY');
  const leaves = new Map<string, Promise<{ cert: string; key: string; expires: number }>>();

  async function mint(name: string) {
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${name}`,
      issuer: caCert.subject,
      notBefore: new Date(now - DAY),
      notAfter: new Date(now + LEAF_DAYS * DAY),
      signingAlgorithm: ALG,
      publicKey: leafKeys.publicKey,
      signingKey: caKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }]),
        await x509.AuthorityKeyIdentifierExtension.create(caCert),
      ],
    });
    return { cert: cert.toString('pem'), key: leafKeyPem, expires: now + (LEAF_DAYS - 1) * DAY };
  }

  return {
    certPem,
    async leaf(name) {
      let entry = leaves.get(name);
      if (entry && (await entry).expires < Date.now()) entry = undefined;
      if (!entry) {
        if (leaves.size >= MAX_LEAVES) leaves.delete(leaves.keys().next().value!);
        entry = mint(name);
        leaves.set(name, entry);
        entry.catch(() => leaves.delete(name));
      }
      const { cert, key } = await entry;
      return { cert, key };
    },
  };
}

async function makeCa(instance: string): Promise<{ certPem: string; keyPem: string }> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const name = `CN=Cove egress proxy CA (${instance}), O=Cove`;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 10 * 365 * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = toPem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { certPem: cert.toString('pem'), keyPem };
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  return webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
}

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64.replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/** 16 random bytes, positive (RFC 5280 §4.1.2.2). */
function serial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const temp = `${file}.tmp`;
  await writeFile(temp, text, { mode });
  await rename(temp, file);
}
