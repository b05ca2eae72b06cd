import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTemplateVms } from './template-vm.ts';
import type { Vms } from './vm.ts';

const base = mkdtempSync(join(tmpdir(), 'cove-template-vm-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** A template image made of `rootfs` (guest.ts names its build beside it). */
function image(name: string, rootfs: string): string {
  const path = join(base, 'cache', 'images', `${name}.ext4`);
  mkdirSync(join(base, 'cache', 'images'), { recursive: true });
  writeFileSync(path, '');
  writeFileSync(`${path}.rootfs`, rootfs);
  return path;
}

/** A published saved VM on `img`, its RAM file kept or lost, last used `ageMs` ago, referred by `holder`. */
function savedVm(key: string, img: string, o: { ram?: boolean; ageMs?: number; holder?: string } = {}) {
  const dir = join(base, 'cache', 'vm-snapshots', key);
  mkdirSync(join(dir, 'refs'), { recursive: true });
  const memory = join(base, `${key}.mem`);
  if (o.ram ?? true) writeFileSync(memory, 'ram');
  for (const f of ['state', 'disk.qcow2']) writeFileSync(join(dir, f), '');
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ memory, key, image: img }));
  if (o.holder) writeFileSync(join(dir, 'refs', 'sbx'), o.holder);
  const when = new Date(Date.now() - (o.ageMs ?? 0));
  utimesSync(join(dir, 'meta.json'), when, when);
  return { dir, memory };
}

describe('saved template VMs of no more use', () => {
  it('go with their template build, their RAM file or ten minutes unused; those in use stay', async () => {
    const build = join(base, 'build-current');
    mkdirSync(build);
    const current = image('current', build);
    const deleted = image('deleted', join(base, 'build-deleted'));
    const held = image('held', join(base, 'build-rebuilt'));
    const holder = join(base, 'sandbox-dir');
    mkdirSync(holder);

    const fresh = savedVm('fresh', current);
    const gone = savedVm('gone', deleted);
    const stillUsed = savedVm('used', held, { holder });
    const old = savedVm('old', current, { ageMs: 11 * 60_000 });
    const lost = savedVm('lost', current, { ram: false });
    const stale = savedVm('stale-ref', current, { holder: join(base, 'killed-sandbox') });

    const vms = createTemplateVms({
      vms: {} as Vms,
      cacheDir: join(base, 'cache'),
      salt: 'x',
      bootTimeoutMs: 1000,
    });
    const removed = await vms.collect();
    expect(removed.sort()).toEqual(['gone', 'image deleted.ext4', 'lost', 'old'].sort());
    for (const v of [gone, old, lost]) expect(existsSync(v.dir)).toBe(false);
    expect(existsSync(gone.memory)).toBe(false);
    expect(existsSync(old.memory)).toBe(false);
    for (const v of [fresh, stillUsed, stale]) expect(existsSync(v.memory)).toBe(true);
    expect(readdirSync(join(stale.dir, 'refs'))).toEqual([]); // a killed sandbox's name went
    expect(existsSync(deleted)).toBe(false);
    expect(existsSync(`${deleted}.rootfs`)).toBe(false);
    expect(existsSync(held)).toBe(true); // its build is gone, but a paused sandbox's layer needs it
    expect(existsSync(current)).toBe(true);
  });
});

describe('a template VM saved again', () => {
  it('never touches the generation whose RAM a reboot lost: its disk backs paused layers', async () => {
    const img = image('rebooted', join(base, 'build-current'));
    const holder = join(base, 'paused-sandbox');
    mkdirSync(holder, { recursive: true });
    const cacheDir = join(base, 'cache');
    const launched: string[] = [];
    const vms = createTemplateVms({
      vms: {
        stateDir: (id: string) => join(base, 'run', id),
        qmpPath: (id: string) => join(base, 'run', id, 'qmp.sock'),
        ioDir: (id: string) => join(base, 'run', id, 'io'),
        launch: (id: string) => {
          launched.push(id); // `.template-<key>-<nonce>`
          return Promise.reject(new Error('no QEMU in a unit test'));
        },
        destroy: () => Promise.resolve(),
      } as unknown as Vms,
      cacheDir,
      salt: 'x',
      bootTimeoutMs: 1000,
    });
    const base0 = { accel: 'tcg' as const, cpus: 1, memoryMiB: 256, kernel: 'k', initrd: 'i' };
    // The key get() computes, learnt from the build it starts; then saved as before a reboot.
    await vms.get(base0, img).catch(() => undefined);
    const key = launched[0]!.split('-')[1]!;
    const old = savedVm(key, img, { ram: false, holder });
    await expect(vms.get(base0, img)).rejects.toThrow();
    for (const f of ['disk.qcow2', 'state', 'meta.json']) expect(existsSync(join(old.dir, f))).toBe(true);
    await vms.collect();
    expect(existsSync(join(old.dir, 'disk.qcow2'))).toBe(true); // still referred to by the paused sandbox
  });
});
