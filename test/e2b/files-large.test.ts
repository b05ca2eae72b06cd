import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from 'e2b';
import type { AuditEvent } from '../../src/audit/index.ts';
import type { Config } from '../../src/config/config.ts';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/**
 * Uploads larger than the audit hash's block (1 MiB), so that their sha256 is computed on the
 * hash thread (src/audit/sha256.ts): through the SDK's two upload modes (multipart and
 * `useOctetStream`), as the default user and as root, several at once. Each file must arrive
 * whole, owned by its writer, and its audit record must carry its size and sha256.
 */
describe.skipIf(!canRunSandboxes)('large uploads: content, ownership, audit hash', () => {
  const config: Config = testConfig();
  let cove: Cove & { config: Config; apiKey: string };
  let sbx: Sandbox;

  const writes = async (): Promise<AuditEvent[]> => {
    const res = await fetch(`${cove.url}/cove/v1/audit?action=file.write&sandbox=${sbx.sandboxId}`, {
      headers: { 'x-api-key': cove.apiKey },
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { events: AuditEvent[] }).events;
  };

  beforeAll(async () => {
    cove = await startTestCove(config);
    pointSdkAt(cove);
    sbx = await Sandbox.create('base');
  });

  afterAll(async () => {
    await sbx?.kill().catch(() => undefined);
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('multipart and octet-stream uploads arrive whole, owned by the writer, hashed in the audit trail', async () => {
    const cases = [
      { path: '/home/user/multipart.bin', data: randomBytes((9 << 20) + 4321), octet: false, user: 'user' },
      { path: '/home/user/octet.bin', data: randomBytes((5 << 20) + 1), octet: true, user: 'user' },
      { path: '/root/root.bin', data: randomBytes(3 << 20), octet: true, user: 'root' },
    ] as const;
    // At once: each upload's hash must stay its own on the shared hash thread.
    await Promise.all(
      cases.map((c) => sbx.files.write(c.path, c.data.buffer, { useOctetStream: c.octet, user: c.user })),
    );
    for (const c of cases) {
      const back = await sbx.files.read(c.path, { format: 'bytes', user: c.user });
      expect(sha256(back), c.path).toBe(sha256(c.data));
      const info = await sbx.files.getInfo(c.path, { user: c.user });
      expect(info).toMatchObject({ size: c.data.length, owner: c.user, group: c.user });
    }
    const events = await writes();
    for (const c of cases) {
      const e = events.find((x) => x.fields.path === c.path);
      expect(e, c.path).toMatchObject({
        outcome: 'ok',
        fields: { size: c.data.length, sha256: sha256(c.data), uid: c.user === 'root' ? 0 : 1000 },
      });
    }
  });

  it('a rewrite replaces the content and records the new hash; a failed write records no hash', async () => {
    const first = randomBytes(2 << 20);
    const second = randomBytes((3 << 20) + 7);
    await sbx.files.write('/tmp/again.bin', first.buffer);
    await sbx.files.write('/tmp/again.bin', second.buffer);
    expect(sha256(await sbx.files.read('/tmp/again.bin', { format: 'bytes' }))).toBe(sha256(second));
    // A directory in the way: the agent refuses, after the body has streamed.
    await sbx.files.makeDir('/tmp/a-dir');
    await expect(sbx.files.write('/tmp/a-dir', randomBytes(2 << 20).buffer)).rejects.toThrow();
    const events = (await writes()).filter((e) => e.fields.path === '/tmp/again.bin');
    expect(events.map((e) => e.fields.sha256)).toEqual([sha256(first), sha256(second)]);
    const refused = (await writes()).find((e) => e.fields.path === '/tmp/a-dir');
    expect(refused).toBeDefined();
    expect(refused!.outcome).not.toBe('ok');
    expect(refused!.fields.sha256).toBeUndefined();
  });
});
