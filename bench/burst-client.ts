// One process of the burst (bench/burst.ts forks several): `clients` concurrent async e2b SDK
// clients, each creating sandboxes one after another until this process has made its share.
// Sandboxes are left running (the parent counts them in manager.list() and kills them). Times
// are taken here, around `Sandbox.create()` alone, which includes the SDK's own retries of a
// 429 (counted by wrapping the global fetch the SDK late-binds). The parent sets E2B_API_URL,
// E2B_SANDBOX_URL and E2B_API_KEY before forking.
import { Sandbox } from 'e2b';

export interface BurstRequest {
  clients: number;
  creates: number;
  timeoutMs: number;
}

export interface BurstReply {
  /** ms per successful create, in completion order. */
  samples: number[];
  ids: string[];
  errors: string[];
  /** HTTP 429 responses the SDK saw (and retried, or gave up on: then they are in errors too). */
  retries429: number;
  /** Wall time of this process's share, ms. */
  wallMs: number;
}

let retries429 = 0;
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const res = await realFetch(input, init);
  if (res.status === 429) retries429++;
  return res;
};

async function burst(req: BurstRequest): Promise<BurstReply> {
  const samples: number[] = [];
  const ids: string[] = [];
  const errors: string[] = [];
  let next = 0;
  const start = performance.now();
  async function client(): Promise<void> {
    while (next < req.creates) {
      next++;
      const t = performance.now();
      try {
        const sbx = await Sandbox.create({ timeoutMs: req.timeoutMs });
        samples.push(Math.round((performance.now() - t) * 100) / 100);
        ids.push(sbx.sandboxId);
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
  }
  await Promise.all(Array.from({ length: req.clients }, client));
  return { samples, ids, errors, retries429, wallMs: performance.now() - start };
}

process.on('message', (req: BurstRequest) => {
  burst(req).then(
    (reply) => process.send?.(reply),
    (err: unknown) =>
      process.send?.({
        samples: [],
        ids: [],
        errors: [String(err)],
        retries429,
        wallMs: 0,
      } satisfies BurstReply),
  );
});
process.on('disconnect', () => process.exit(0));
process.send?.('ready');
