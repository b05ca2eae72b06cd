import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EGRESS_CA_PATH, installEgressCa } from './trust-store.ts';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----';
const ROOTS = '-----BEGIN CERTIFICATE-----\nroot one\n-----END CERTIFICATE-----\n';
const owner = process.getuid?.() ?? 0;
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A rootfs with the template's bundle as a fresh layer sees it (a plain copy: no overlay here). */
async function rootfs(bundle: string | undefined): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'cove-trust-'));
  dirs.push(root);
  await mkdir(join(root, 'etc', 'ssl', 'certs'), { recursive: true });
  if (bundle !== undefined) await writeFile(join(root, 'etc/ssl/certs/ca-certificates.crt'), bundle);
  return root;
}
const bundleOf = (root: string) => readFile(join(root, 'etc/ssl/certs/ca-certificates.crt'), 'utf8');

describe('installEgressCa', () => {
  it('appends the CA once, and fresh layers of the same template get the same bundle unread', async () => {
    const template = `/templates/t-${Math.random()}`;
    for (let i = 0; i < 3; i++) {
      const root = await rootfs(ROOTS);
      await installEgressCa(root, PEM, owner, template);
      expect(await bundleOf(root)).toBe(`${ROOTS}${PEM}\n`);
      expect(await readFile(join(root, EGRESS_CA_PATH), 'utf8')).toBe(`${PEM}\n`);
    }
  });

  it('reads a layer that is not fresh, and never appends twice', async () => {
    const root = await rootfs(`${ROOTS}${PEM}\n`);
    await installEgressCa(root, PEM, owner);
    expect(await bundleOf(root)).toBe(`${ROOTS}${PEM}\n`);
    const other = await rootfs('no newline at the end');
    await installEgressCa(other, PEM, owner);
    expect(await bundleOf(other)).toBe(`no newline at the end\n${PEM}\n`);
  });

  it('leaves a template without a bundle, or whose bundle is a symlink, without one', async () => {
    const template = `/templates/t-${Math.random()}`;
    for (let i = 0; i < 2; i++) {
      const root = await rootfs(undefined);
      await writeFile(join(root, 'victim'), 'outside\n');
      await symlink(join(root, 'victim'), join(root, 'etc/ssl/certs/ca-certificates.crt'));
      await installEgressCa(root, PEM, owner, template);
      expect(await readFile(join(root, 'victim'), 'utf8')).toBe('outside\n');
    }
    const bare = await rootfs(undefined);
    await installEgressCa(bare, PEM, owner, `/templates/t-${Math.random()}`);
    await expect(bundleOf(bare)).rejects.toThrow(/ENOENT/);
  });
});
