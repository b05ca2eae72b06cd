import { describe, expect, it } from 'vitest';
import type { SandboxInfo } from '../manager/manager.ts';
import { OPEN_NETWORK } from '../network/egress-policy.ts';
import { ingress } from './ingress.ts';

const sandbox = (extra: Partial<SandboxInfo> = {}): SandboxInfo => ({
  id: 'x'.repeat(20),
  templateName: 'base',
  state: 'running',
  startedAt: new Date(0),
  endAt: new Date(1),
  metadata: {},
  limits: { cpus: 1, memoryMiB: 512, pids: 100 },
  address: '10.0.0.2',
  runtime: 'crun',
  network: OPEN_NETWORK,
  ...extra,
});

describe('ingress settings at the port proxy', () => {
  it('wants the traffic token when the sandbox has one, with upstream’s 403 bodies', () => {
    const s = sandbox({ trafficAccessToken: 'secret' });
    expect(ingress(s, 8080, {})).toEqual({
      denied: {
        sandboxId: s.id,
        message:
          "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing",
      },
    });
    expect(ingress(s, 8080, { 'e2b-traffic-access-token': 'secreT' })).toMatchObject({
      denied: { message: expect.stringMatching(/is invalid$/) as unknown },
    });
    expect(ingress(s, 8080, { 'e2b-traffic-access-token': 'secret' })).toEqual({
      target: { sandboxId: s.id, address: '10.0.0.2', port: 8080 },
    });
    expect(ingress(sandbox(), 8080, {})).toHaveProperty('target');
  });

  it('masks the Host with the port put in, and marks httpsPorts', () => {
    const s = sandbox({
      network: { ...OPEN_NETWORK, maskRequestHost: 'custom.example.com:${PORT}', httpsPorts: [8443] },
    });
    expect(ingress(s, 8443, {})).toEqual({
      target: {
        sandboxId: s.id,
        address: '10.0.0.2',
        port: 8443,
        host: 'custom.example.com:8443',
        tls: true,
      },
    });
    expect(ingress(s, 80, {})).toEqual({
      target: { sandboxId: s.id, address: '10.0.0.2', port: 80, host: 'custom.example.com:80' },
    });
  });
});
