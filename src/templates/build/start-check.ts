import type { TemplateLimits, TemplateStart } from '../store.ts';
import type { BuildLog, Layer } from './run-build.ts';
import type { OpenBuildSandbox } from './sandbox.ts';
import { StepError } from './spec.ts';

/** The step E2B names for what runs after the last instruction: the SDK points at setStartCmd. */
const FINALIZE = 'finalize';

/**
 * E2B runs a template's start command and waits for its ready command during the build (its
 * snapshot is taken after them), so a start command that fails fails the build, not a later
 * create. Cove keeps no memory snapshot of a build: it runs the pair once here, in a sandbox on
 * the finished rootfs, as a create would (the template's user, environment and workdir), with
 * the start command's output in the build log, then throws the sandbox away; every create runs
 * them again (src/manager/startup.ts). A start command that exits non-zero before the ready
 * command succeeds, or a ready command that does not succeed within the start's deadline, is a
 * StepError at `finalize`, whose message ends with the start command's last lines.
 */
export async function checkStart(
  open: OpenBuildSandbox,
  b: {
    name: string;
    layer: Layer;
    start: TemplateStart & { readyCmd: string };
    limits: TemplateLimits;
    runtime: string | undefined;
    log: BuildLog;
  },
): Promise<void> {
  const { layer, start, log } = b;
  const ctx = layer.ctx;
  const opts = { user: start.user ?? ctx.user.name, env: ctx.env, ...(ctx.workdir && { cwd: ctx.workdir }) };
  const tail: string[] = [];
  let partial = '';
  const line = (text: string) => {
    tail.push(text);
    if (tail.length > 20) tail.shift();
    log('info', text, FINALIZE);
  };
  const onData = (d: Buffer) => {
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    lines.forEach(line);
  };
  const failure = (why: string) => {
    if (partial !== '') line(partial);
    partial = '';
    const out = tail.join('\n').trim();
    return new StepError(FINALIZE, `the start command ${why}${out ? `; its output:\n${out}` : ''}`);
  };

  log(
    'info',
    `running the start command \`${start.command}\` until \`${start.readyCmd}\` succeeds`,
    FINALIZE,
  );
  const started = Date.now();
  const sandbox = await open({
    name: b.name,
    hash: layer.key.slice(0, 16),
    rootfs: layer.rootfs,
    limits: b.limits,
    defaultUser: ctx.user,
    env: {},
    ...(b.runtime && { runtime: b.runtime }),
  });
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  try {
    const exited = sandbox.run(['/bin/sh', '-c', start.command], opts, onData);
    const failed = exited.then((code) =>
      code === 0 || done
        ? new Promise<never>(() => {}) // a start command may hand off to a daemon and exit 0
        : Promise.reject(failure(`exited with status ${code} before the ready command succeeded`)),
    );
    const ready = (async () => {
      for (;;) {
        const code = await sandbox.run(['/bin/sh', '-c', start.readyCmd], opts, () => {});
        if (code === 0 || done) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(failure(`was not ready within ${start.readyTimeoutMs} ms`)),
        start.readyTimeoutMs,
      );
    });
    // The losers settle when the sandbox goes (below): nothing may reject unobserved.
    for (const p of [exited, failed, ready, late]) p.catch(() => {});
    await Promise.race([ready, failed, late]);
    log('info', `the start command was ready in ${((Date.now() - started) / 1000).toFixed(1)}s`, FINALIZE);
  } finally {
    done = true;
    clearTimeout(timer);
    await sandbox.remove();
  }
}
