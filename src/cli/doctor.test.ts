import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeAccelerator, probeHost } from '../runtime/microvm/accel.ts';
import { hostChecks } from './doctor.ts';
import { scratchDir } from '../../test/scratch.ts';

const cacheDir = () => scratchDir('cove-doctor-');

describe('cove doctor', () => {
  it('has a line for each backend, the microVM accelerator with its reason, and kernel features', async () => {
    const checks = await hostChecks(cacheDir());
    const names = checks.map((c) => c.name);
    for (const name of [
      'kernel',
      'user namespaces',
      'crun',
      'runsc',
      'qemu',
      'microvm guest',
      'microvm accelerator',
    ])
      expect(names).toContain(name);
    const accel = describeAccelerator(probeHost());
    const line = checks.find((c) => c.name === 'microvm accelerator')!;
    expect(line.detail).toBe(`${accel.name}: ${accel.why}`);
    expect(line.status).toBe(accel.name === 'kvm' ? 'ok' : 'warn');
    // A fresh cache holds no guest yet: it is built when the backend is first used.
    expect(checks.find((c) => c.name === 'microvm guest')!.detail).toMatch(/not built yet/);
  });

  it('tells PVM apart and says software emulation is slow for heavy computation', async () => {
    const root = `${scratchDir('cove-doctor-root-')}/`;
    for (const dir of ['dev', 'sys/module/kvm_pvm', 'proc/sys/user'])
      mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, 'dev/kvm'), '');
    writeFileSync(join(root, 'proc/sys/user/max_user_namespaces'), '0\n');
    const checks = await hostChecks(cacheDir(), root);
    const accel = checks.find((c) => c.name === 'microvm accelerator')!;
    expect(accel).toMatchObject({ status: 'warn' });
    expect(accel.detail).toMatch(/^tcg: \/dev\/kvm is PVM .*much slower for heavy computation/);
    expect(checks.find((c) => c.name === 'user namespaces')).toMatchObject({ status: 'fail' });
  });

  it('prints one line per check through the CLI', () => {
    const bin = join(import.meta.dirname, '..', '..', 'bin', 'cove');
    let out: string;
    try {
      out = execFileSync(bin, ['doctor'], { env: { ...process.env, COVE_HOME: cacheDir() } }).toString();
    } catch (err) {
      out = (err as { stdout: Buffer }).stdout.toString(); // exit 1 where a required check fails
    }
    expect(out).toMatch(/^(ok|warn|fail)\s+crun\s+/m);
    expect(out).toMatch(/^(ok|warn)\s+microvm accelerator\s+(kvm|tcg): /m);
  });
});
