import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { Config } from '../src/config/config.ts';
import { startCove, type Cove } from '../src/main.ts';
import { describeAccelerator, probeHost, TCG_WARNING } from '../src/runtime/microvm/accel.ts';
import { canRunSandboxes, pointSdkAt, stopTestCove, testApiKey, testConfig } from './helpers.ts';
import { microvmReady } from './microvm-host.ts';

const loadE2b = () => import('e2b');

// A ready timeout no VM can meet: every attempt fails, quickly.
const base = testConfig({ runtime: 'microvm' });
const config: Config = { ...base, microvm: { ...base.microvm, readyTimeoutMs: 1 } };
const qemuInstalled = microvmReady(config);

/**
 * Safety and detection of the microvm backend (src/runtime/microvm/ready.ts, accel.ts): a VM
 * that is not ready in time is killed and retried once, then the create fails with a typed
 * error and leaves nothing; the accelerator and its reason are in the host endpoint; a server
 * whose default is microVMs under software emulation says they are slow for heavy computation.
 */
describe.skipIf(!canRunSandboxes || !qemuInstalled)('microVM readiness and accelerator', () => {
  let cove: Cove & { config: Config; apiKey: string };
  const lines: Array<{ level: number; msg: string; err?: string }> = [];

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split('\n').filter(Boolean))
          lines.push(JSON.parse(l) as (typeof lines)[0]);
        done();
      },
    });
    const log = pino({ level: 'info', base: undefined }, sink);
    cove = { ...(await startCove(config, { log, apiKey: testApiKey })), config, apiKey: testApiKey };
    pointSdkAt(cove);
  }, 600_000);

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('kills a VM that is not ready in time, retries once, then fails the create with a typed error', async () => {
    const { Sandbox, SandboxError } = await loadE2b();
    const err = await Sandbox.create('base', { timeoutMs: 120_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxError);
    expect(err).toMatchObject({ statusCode: 504 }); // deadline_exceeded
    expect(String(err)).toMatch(/did not become ready, twice \(killed and retried once\)/);
    expect(lines.filter((l) => l.msg === 'microvm: VM not ready; killed, retrying once')).toHaveLength(1);
    expect(cove.manager.list()).toEqual([]);
  });

  it('names the accelerator and why in GET /cove/v1/host', async () => {
    const res = await fetch(new URL('/cove/v1/host', cove.url), { headers: { 'X-API-Key': cove.apiKey } });
    const host = (await res.json()) as { microvm?: { name: string; why: string; decided: boolean } };
    const probed = describeAccelerator(probeHost());
    expect(host.microvm).toMatchObject({ name: probed.name, decided: true });
    if (probed.name === 'tcg') expect(host.microvm?.why).toBe(probed.why);
  });

  it('warns at start, where microVMs are the default, that software emulation is slow', () => {
    const tcg = describeAccelerator(probeHost()).name === 'tcg';
    expect(cove.warnings ?? []).toEqual(tcg ? [TCG_WARNING] : []);
    expect(lines.some((l) => l.level === 40 && l.msg === TCG_WARNING)).toBe(tcg);
    expect(TCG_WARNING).toMatch(/slower/);
  });
});

/** QEMU drops root once it has opened what it needs (src/runtime/microvm/README.md, QEMU's own user). */
describe.skipIf(!canRunSandboxes || !qemuInstalled)('QEMU of a microVM sandbox', () => {
  let cove: Cove & { config: Config; apiKey: string };

  beforeAll(async () => {
    cove = { ...(await startCove(base, { apiKey: testApiKey })), config: base, apiKey: testApiKey };
    pointSdkAt(cove);
  }, 600_000);

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('runs as the sandbox’s own host uid, without capabilities, and still pauses and resumes', async () => {
    const { Sandbox } = await loadE2b();
    const sbx = await Sandbox.create('base', { timeoutMs: 120_000 });
    const qemu = () => {
      const pid = readFileSync(join(base.microvm.stateRoot, sbx.sandboxId, 'pid'), 'utf8');
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return { uid: /^Uid:\s+(.*)$/m.exec(status)?.[1], caps: /^CapEff:\s+(\S+)$/m.exec(status)?.[1] };
    };
    // The base of the sandbox's uid range: its run directory's owner (src/manager/host.ts).
    const uid = String(statSync(join(base.home, 'sandboxes', sbx.sandboxId, 'run')).uid);
    expect(qemu()).toEqual({ uid: [uid, uid, uid, uid].join('\t'), caps: '0000000000000000' });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await sbx.pause(); // migration through Cove's socket: QEMU opens no file itself
    const resumed = await Sandbox.connect(sbx.sandboxId);
    expect(await resumed.files.read('/home/user/kept.txt')).toBe('kept');
    expect(qemu().uid).toBe([uid, uid, uid, uid].join('\t'));
    await resumed.kill();
  });
});
