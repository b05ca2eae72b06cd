import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { promisify } from 'node:util';
import type { TlsSetting } from '../config/config.ts';
import { CoveError } from '../core/errors.ts';

/** What the HTTPS server is built from; `caFile` is the CA to trust, when Cove made it. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  caFile?: string;
  /** The names the certificate is valid for (its subjectAltName), for the startup banner. */
  names: string[];
}

/** The domain of a self-signed setup without `--domain`: `*.localhost` cannot be certified. */
export const SELF_SIGNED_DOMAIN = 'cove.localhost';

/** The sandbox domain's name without its port (`cove.test:8443` → `cove.test`). */
export function domainName(domain: string): string {
  return domain.replace(/:\d+$/, '');
}

/**
 * Loads and checks the material for one start: the files must be readable PEM, the key must
 * be the certificate's, and Node's TLS must accept the pair, so that a mistake is a clear
 * error at start rather than a handshake failure at the first client. Self-signed material
 * is made under `dir` (COVE_HOME/tls) on the first start and reused after.
 */
export async function loadTls(setting: TlsSetting, dir: string, domain: string): Promise<TlsMaterial> {
  if ('selfSigned' in setting) return selfSigned(dir, domainName(domain));
  const read = async (what: string, file: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new CoveError('invalid_argument', `TLS ${what} ${file}: cannot read it (${reason})`, {
        cause: err,
      });
    }
  };
  // One after the other, so that when both are unreadable the error names the certificate.
  const cert = await read('certificate', setting.cert);
  const key = await read('key', setting.key);
  return { cert, key, names: check(cert, key, setting) };
}

/** The certificate's names; throws when the pair is unusable. */
function check(cert: Buffer, key: Buffer, files: { cert: string; key: string }): string[] {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new CoveError('invalid_argument', `TLS certificate ${files.cert}: not a PEM certificate`, {
      cause: err,
    });
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key)))
      throw new CoveError(
        'invalid_argument',
        `TLS key ${files.key} does not belong to certificate ${files.cert}`,
      );
    createSecureContext({ cert, key });
  } catch (err) {
    if (err instanceof CoveError) throw err;
    throw new CoveError('invalid_argument', `TLS key ${files.key}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return (x509.subjectAltName ?? '').split(', ').filter(Boolean);
}

/** True when the certificate names `name`: an exact name, or a wildcard one level up. */
export function covers(cert: Buffer, name: string): boolean {
  const x509 = new X509Certificate(cert);
  return isIP(name) ? x509.checkIP(name) !== undefined : x509.checkHost(name) !== undefined;
}

const run = promisify(execFile);

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const why = e.code === 'ENOENT' ? 'openssl is not installed (apt-get install openssl)' : e.stderr?.trim();
    throw new CoveError('internal', `making the self-signed certificate: ${why ?? e.message}`, {
      cause: err,
    });
  }
}

const DAY = 86_400_000;

/**
 * A local CA (ca.pem, ca-key.pem; ten years) and a certificate it signs (cert.pem, key.pem;
 * 825 days, the longest Apple's clients accept) for `<name>`, `*.<name>`, `localhost` and
 * 127.0.0.1, made with the openssl CLI (Node makes keys but not certificates). The CA is made
 * once and kept, so that it is trusted once; the certificate is made again when the domain
 * changes or it has under 30 days left. Keys are 0600 in a 0700 directory.
 */
async function selfSigned(dir: string, name: string): Promise<TlsMaterial> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const caFile = join(dir, 'ca.pem');
  const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  const names = [`DNS:${name}`, `DNS:*.${name}`, 'DNS:localhost', 'IP:127.0.0.1'];
  const existing = await Promise.all(
    [caFile, files.cert, files.key].map((f) => readFile(f).catch(() => null)),
  );
  const [ca, cert, key] = existing;
  if (
    ca &&
    cert &&
    key &&
    covers(cert, name) &&
    covers(cert, `api.${name}`) &&
    new X509Certificate(cert).verify(new X509Certificate(ca).publicKey) &&
    Date.parse(new X509Certificate(cert).validTo) - Date.now() > 30 * DAY
  )
    return { cert, key, caFile, names: check(cert, key, files) };

  // Made in a scratch directory and renamed in: a crash never leaves a half-made pair.
  const work = await mkdtemp(join(dir, 'new-'));
  try {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    if (!ca) {
      await openssl(
        ['req', '-x509', ...ec, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '3650'].concat(
          ['-subj', `/CN=Cove local CA (${name})`],
          [
            '-addext',
            'basicConstraints=critical,CA:TRUE',
            '-addext',
            'keyUsage=critical,keyCertSign,cRLSign',
          ],
        ),
        work,
      );
      await chmod(join(work, 'ca-key.pem'), 0o600);
      await rename(join(work, 'ca-key.pem'), join(dir, 'ca-key.pem'));
      await rename(join(work, 'ca.pem'), caFile);
    }
    await writeFile(
      join(work, 'ext.cnf'),
      `subjectAltName=${names.join(',')}\nbasicConstraints=CA:FALSE\n` +
        `keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`,
    );
    await openssl(
      ['req', '-new', ...ec, '-keyout', 'key.pem', '-out', 'cert.csr', '-subj', `/CN=${name}`],
      work,
    );
    await openssl(
      ['x509', '-req', '-in', 'cert.csr', '-CA', caFile, '-CAkey', join(dir, 'ca-key.pem')].concat(
        ['-CAcreateserial', '-CAserial', join(work, 'ca.srl'), '-days', '825', '-sha256'],
        ['-extfile', 'ext.cnf', '-out', 'cert.pem'],
      ),
      work,
    );
    await chmod(join(work, 'key.pem'), 0o600);
    await rename(join(work, 'key.pem'), files.key);
    await rename(join(work, 'cert.pem'), files.cert);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const [newCert, newKey] = await Promise.all([readFile(files.cert), readFile(files.key)]);
  return { cert: newCert, key: newKey, caFile, names: check(newCert, newKey, files) };
}

/**
 * What `cove serve` prints after starting with TLS: how to trust a Cove-made CA, and how to
 * make `*.<domain>` resolve to this machine.
 */
export function trustHints(material: TlsMaterial, domain: string): string {
  const name = domainName(domain);
  const lines: string[] = [];
  if (material.caFile)
    lines.push(
      `  TLS: a local CA made the certificate (${material.names.join(', ')}). Trust it:`,
      `    Node (the E2B SDK):  export NODE_EXTRA_CA_CERTS=${material.caFile}`,
      `    curl:                curl --cacert ${material.caFile} …   (or SSL_CERT_FILE)`,
      `    Python (httpx, requests): export SSL_CERT_FILE=${material.caFile} REQUESTS_CA_BUNDLE=${material.caFile}`,
      `    system and browsers: cp ${material.caFile} /usr/local/share/ca-certificates/cove.crt && update-ca-certificates`,
      `      (Firefox and Chrome keep their own stores: import it as an authority)`,
    );
  else lines.push(`  TLS: certificate for ${material.names.join(', ')}`);
  if (name === 'localhost' || name.endsWith('.localhost'))
    lines.push(`  curl and browsers resolve *.${name} to the loopback; Node asks the system resolver, so:`);
  lines.push(
    `  resolve api.${name} and *.${name} to this machine: dnsmasq  address=/${name}/127.0.0.1`,
    `    or /etc/hosts, one line per host:  127.0.0.1 api.${name} 49983-<id>.${name} 8080-<id>.${name}`,
  );
  return lines.join('\n') + '\n';
}
