/**
 * Which of E2B's JS SDK test files the conformance run executes, and why the others do not
 * run. Paths are relative to upstream `packages/js-sdk/tests`. A file that matches no rule is
 * new upstream: it is skipped as "not triaged" until someone adds it here.
 *
 * Issues named below: 4 "Reach into sandboxes" (ports, TLS, host names, network policy),
 * 6 pause/resume/fork/snapshots, 7 code interpreter, 9 templates, 12 MCP, 13 volumes/secrets.
 */

export interface Rule {
  /** A path relative to tests/, or a folder ending in '/', or a '*' glob inside one folder. */
  match: string;
  /** Absent: the file runs. Present: why it does not. */
  skip?: string;
}

const SDK_UNIT = 'offline unit test of SDK internals: says nothing about the server';
const MSW =
  'msw mock of the cloud API (offline): checks the SDK request body, needs SDK internals to route through fetch';

export const rules: Rule[] = [
  // What Cove serves now.
  { match: 'api/info.test.ts' },
  { match: 'api/kill.test.ts' },
  { match: 'api/list.test.ts' },
  { match: 'sandbox/commands/*' },
  { match: 'sandbox/files/*' },
  { match: 'sandbox/pty/*' },
  { match: 'sandbox/connect.test.ts' },
  { match: 'sandbox/create.test.ts' },
  { match: 'sandbox/kill.test.ts' },
  { match: 'sandbox/timeout.test.ts' },
  { match: 'sandbox/secure.test.ts' },
  { match: 'sandbox/metrics.test.ts' },
  { match: 'sandbox/lifecyclePayload.test.ts' },
  // Offline, but cheap, and part of the public surface (file URLs, signatures).
  { match: 'sandbox/urls.test.ts' },
  // getHost() names `<port>-<id>.cove.localhost:<port>` (Cove's reply domain with --tls), which
  // guard.ts resolves to the loopback; the run serves https, as the tests ask.
  { match: 'sandbox/host.test.ts' },
  { match: 'sandbox/configPropagation.test.ts' },
  { match: 'sandbox/rpcHeaders.test.ts' },

  // Pause/resume, snapshots and fork (issue 6): on the server's default runtime; with
  // COVE_RUNTIME=runsc in the environment of the run, on gVisor (memory kept by a checkpoint).
  { match: 'api/snapshot.test.ts' },
  { match: 'sandbox/snapshot.test.ts' },
  { match: 'sandbox/snapshot-api.test.ts' },
  { match: 'sandbox/fork.test.ts' },

  // Later issues.
  {
    match: 'sandbox/network.test.ts',
    skip: 'needs the real internet (1.1.1.1, 8.8.8.8), https getHost and the httpbin template; test/e2b/network-policy.test.ts covers it offline',
  },
  {
    match: 'sandbox/internetAccess.test.ts',
    skip: 'needs the real internet (gstatic.com); test/e2b/network-policy.test.ts covers it offline',
  },
  { match: 'sandbox/egressProxy.test.ts', skip: `${MSW}; egress proxy is issue 4` },
  { match: 'sandbox/networkTransform.test.ts', skip: `${MSW}; network rules are issue 4` },
  { match: 'sandbox/iam.test.ts', skip: `${MSW}; workload identity tokens are cloud-only` },
  { match: 'sandbox/abortSignal.test.ts', skip: MSW },
  { match: 'sandbox/lifecycleRequest.test.ts', skip: `${MSW}; auto-pause is issue 6` },
  {
    match: 'sandbox/git/',
    skip: 'git helper (deprecated upstream): later; clone needs internet, validation.test needs SDK internals',
  },
  // Templates (issue 9). Upstream's builds from `ubuntu:22.04` pull a Debian stand-in from a
  // registry on the loopback (stand-ins.ts); stacktrace.test.ts gets a `devcontainer` template.
  { match: 'template/build.test.ts' },
  { match: 'template/backgroundBuild.test.ts' },
  { match: 'template/exists.test.ts' },
  { match: 'template/stacktrace.test.ts' },
  { match: 'template/methods/*' },
  { match: 'template/abortSignal.test.ts', skip: MSW },
  { match: 'template/boundOpts.test.ts', skip: MSW },
  { match: 'template/tags.test.ts', skip: `${MSW} (Cove: test/e2b/templates.test.ts tags)` },
  { match: 'template/', skip: SDK_UNIT },
  { match: 'volume/', skip: 'volumes: later (issue 13)' },
  { match: 'secret/', skip: 'secrets: later (issue 13)' },
  { match: 'runtimes/', skip: 'browser (Playwright) and Cloudflare Workers runtimes: not installable here' },
  { match: 'bundle/', skip: 'needs the SDK built from source (dist/), not the npm package' },

  // The SDK's own unit tests.
  { match: 'api/handleApiError.test.ts', skip: SDK_UNIT },
  { match: 'api/http2.test.ts', skip: SDK_UNIT },
  { match: 'api/inflight.test.ts', skip: SDK_UNIT },
  { match: 'api/validateApiKey.test.ts', skip: SDK_UNIT },
  { match: 'envd/', skip: SDK_UNIT },
  { match: 'client.test.ts', skip: MSW },
  { match: 'connectionConfig.test.ts', skip: SDK_UNIT },
  { match: 'connectionConfig.browser.test.ts', skip: SDK_UNIT },
  { match: 'is.test.ts', skip: SDK_UNIT },
  { match: 'logs.test.ts', skip: SDK_UNIT },
  { match: 'paginator.test.ts', skip: SDK_UNIT },
  { match: 'runtime.test.ts', skip: SDK_UNIT },
  { match: 'stripAnsi.test.ts', skip: SDK_UNIT },
  { match: 'undici.test.ts', skip: SDK_UNIT },
  { match: 'utils.test.ts', skip: SDK_UNIT },
];

function matches(rule: string, file: string): boolean {
  if (rule.endsWith('/')) return file.startsWith(rule);
  if (rule.endsWith('/*')) {
    const dir = rule.slice(0, -1);
    return file.startsWith(dir) && !file.slice(dir.length).includes('/');
  }
  return rule === file;
}

/** The rule for one test file: run it (skip undefined) or skip it with a reason. */
export function classify(file: string): { skip?: string } {
  const rule = rules.find((r) => matches(r.match, file));
  if (!rule) return { skip: 'new upstream file, not triaged: add it to conformance/plan.ts' };
  return rule.skip === undefined ? {} : { skip: rule.skip };
}
