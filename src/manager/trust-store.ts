import { constants } from 'node:fs';
import { mkdir, open, realpath } from 'node:fs/promises';
import { join } from 'node:path';

/** Where a sandbox finds the egress proxy's CA: alone (NODE_EXTRA_CA_CERTS) and in the system bundle. */
export const EGRESS_CA_PATH = '/etc/ssl/certs/cove-egress-ca.pem';
const BUNDLE = 'ca-certificates.crt';

/** What points each TLS stack at the bundle with the egress CA in it (most read it already). */
export const EGRESS_CA_ENV: Record<string, string> = {
  // Node trusts its own copy of Mozilla's roots, not the system's: it needs the CA named.
  NODE_EXTRA_CA_CERTS: EGRESS_CA_PATH,
  // pip's requests and httpx trust certifi's roots unless told otherwise.
  REQUESTS_CA_BUNDLE: `/etc/ssl/certs/${BUNDLE}`,
  SSL_CERT_FILE: `/etc/ssl/certs/${BUNDLE}`,
};

/**
 * Makes a sandbox trust the egress proxy's CA (network/egress-ca.ts), as E2B's envd appends
 * its `caBundle` to the system bundle: written into the fresh overlay before the sandbox
 * starts (nothing inside can race it), owned by the sandbox's root so it stays its own to
 * change. Appended once: a resumed or snapshot-seeded layer that has it is left alone. The
 * directory is resolved first and must stay inside the rootfs (a template's symlink must not
 * lead the host's write elsewhere); the files are opened without following links.
 */
export async function installEgressCa(
  rootfs: string,
  pem: string,
  owner: number,
  /** The template's rootfs when this layer is fresh over it (no resume, no snapshot seed). */
  freshOver?: string,
): Promise<void> {
  const root = await realpath(rootfs);
  const wanted = join(root, 'etc', 'ssl', 'certs');
  await mkdir(wanted, { recursive: true, mode: 0o755 }).catch(() => {});
  const dir = await realpath(wanted).catch(() => undefined);
  if (!dir?.startsWith(`${root}/`)) return;
  const text = `${pem.trim()}\n`;
  await writeOwned(join(dir, 'cove-egress-ca.pem'), text, owner);
  const key = freshOver === undefined ? undefined : `${freshOver}\0${text}`;
  const known = key === undefined ? undefined : bundles.get(key);
  if (known === null) return; // this template has no bundle, or has the CA already
  if (known !== undefined) {
    // The fresh layer's bundle is the template's: write the known result over it, unread. An
    // O_TRUNC open copies it up without its data (overlayfs), keeping the template's owner.
    const bundle = await open(
      join(dir, BUNDLE),
      constants.O_WRONLY | constants.O_TRUNC | constants.O_NOFOLLOW,
    );
    try {
      await bundle.writeFile(known);
    } finally {
      await bundle.close();
    }
    return;
  }
  const bundle = await open(join(dir, BUNDLE), constants.O_RDWR | constants.O_NOFOLLOW).catch(
    () => undefined,
  );
  if (!bundle) return remember(key, null); // a template without ca-certificates: tools that name the file above still work
  try {
    const current = await bundle.readFile('utf8');
    if (current.includes(text.trim())) return remember(key, null);
    const separator = current === '' || current.endsWith('\n') ? '' : '\n';
    await bundle.write(separator + text, Buffer.byteLength(current));
    remember(key, current + separator + text);
  } finally {
    await bundle.close();
  }
}

/**
 * The bundle each template's fresh layers get (null: leave it as it is), by template rootfs
 * and CA: a template's rootfs never changes once published (templates/store.ts), so reading
 * its 200 KB bundle through the overlay at every create (~3 ms) once per template suffices.
 */
const bundles = new Map<string, string | null>();
const MAX_BUNDLES = 64;
function remember(key: string | undefined, value: string | null): void {
  if (key === undefined) return;
  if (bundles.size >= MAX_BUNDLES) bundles.delete(bundles.keys().next().value!);
  bundles.set(key, value);
}

async function writeOwned(path: string, text: string, owner: number): Promise<void> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  const file = await open(path, flags, 0o644);
  try {
    await file.writeFile(text);
    await file.chown(owner, owner);
  } finally {
    await file.close();
  }
}
