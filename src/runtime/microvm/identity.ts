import { randomBytes } from 'node:crypto';
import { connectAgent } from '../../agent-channel/index.ts';
import { CoveError } from '../../core/errors.ts';

/** Who a restored VM is: the sandbox's hostname, and its address, gateway and MAC on eth0. */
export interface GuestIdentity {
  hostname: string;
  /** CIDR, e.g. 10.11.0.7/16; none: eth0 stays as it is. */
  address?: string;
  gateway?: string;
  mac?: string;
}

/**
 * Run by the guest's busybox (guest/init puts it at /.cove/busybox) as root. A restored VM's
 * clock stands where it was saved and its CRNG is the saved one's (every clone of a template
 * would draw the same numbers): the agent sets the clock to the ns and reseeds from the host's
 * bytes (agent/src/restored.c). Its hostname, MAC and address are the saved VM's: each is
 * replaced, and /etc/hosts names the new ones.
 */
const SCRIPT = `
set -e
b=/.cove/busybox
/.cove/agent --restored "$1" "$2"
$b hostname "$3"
[ -n "$4" ] || exit 0
$b ip link set eth0 address "$6"
$b ip addr flush dev eth0
$b ip addr add "$4" dev eth0
$b ip link set eth0 up
[ -z "$5" ] || $b ip route replace default via "$5"
printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n%s\\t%s\\n' "\${4%/*}" "$3" >/etc/hosts
`;

/**
 * Gives a VM restored from a saved state (a template's clone, a resume, a fork) its own clock,
 * randomness and identity through its agent, before anyone else talks to it.
 */
export async function setIdentity(agentSocket: string, who: GuestIdentity, timeoutMs: number): Promise<void> {
  // Any token: on a VM's port the agent takes the host's word (its other end is QEMU's socket).
  const agent = await connectAgent(agentSocket, 'cove', { timeoutMs });
  try {
    const argv = [
      '/.cove/busybox',
      'sh',
      '-c',
      SCRIPT,
      'cove-identity',
      String(BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n), // ns
      randomBytes(64).toString('hex'),
      who.hostname,
      who.address ?? '',
      who.gateway ?? '',
      who.mac ?? '',
    ];
    let stderr = '';
    const result = await new Promise<{ exitCode: number }>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new CoveError('deadline_exceeded', `the VM's identity was not set within ${timeoutMs} ms`)),
        timeoutMs,
      );
      agent
        .spawn(
          { argv, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, cwd: '/', uid: 0, gid: 0 },
          {
            onData: (_s, d) => void (stderr = `${stderr}${d.toString()}`.slice(-2000)),
            onExit: (r) => {
              clearTimeout(timer);
              resolve(r);
            },
            onDetach: (err) => {
              clearTimeout(timer);
              reject(err instanceof Error ? err : new Error(String(err)));
            },
          },
        )
        .catch((err: unknown) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        });
    });
    if (result.exitCode !== 0)
      throw new CoveError(
        'internal',
        `setting the VM's identity failed (${result.exitCode}): ${stderr.trim()}`,
      );
  } finally {
    agent.close();
  }
}
