import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import { Signal } from '../../../gen/process/process_pb.js';
import { envdOf } from './envd.ts';

/**
 * How long a terminal's shell may live: envd kills a process at its Start call's deadline, so
 * a tab closed without saying goodbye leaves no shell behind for longer than this.
 */
const SHELL_LIFETIME_MS = 60 * 60_000;

const encoder = new TextEncoder();

/**
 * A shell in the sandbox over envd's PTY API, as `sbx.pty.create()` opens one: Start streams
 * the PTY's bytes into xterm.js, keystrokes go back in SendInput calls (one at a time, so they
 * arrive in order), a resize is an Update. Closing the terminal kills the shell. xterm.js
 * draws what the sandbox writes as terminal cells, never as markup.
 */
export function TerminalView({ id }: { id: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState('connecting…');
  useEffect(() => {
    const term = new Terminal({ fontSize: 13, cursorBlink: true, scrollback: 5000 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(box.current!);
    fit.fit();
    const abort = new AbortController();
    let pid: number | undefined;
    let closed = false;
    let queue: Promise<unknown> = Promise.resolve();
    const envd = envdOf(id);
    const later = (f: (e: Awaited<typeof envd>, pid: number) => Promise<unknown>) => {
      queue = queue
        .then(async () => pid !== undefined && !closed && f(await envd, pid))
        .catch(() => undefined);
    };
    const input = term.onData((d) =>
      later((e, p) =>
        e.process.sendInput({
          process: { selector: { case: 'pid', value: p } },
          input: { input: { case: 'pty', value: encoder.encode(d) } },
        }),
      ),
    );
    const resize = term.onResize(({ cols, rows }) =>
      later((e, p) =>
        e.process.update({ process: { selector: { case: 'pid', value: p } }, pty: { size: { cols, rows } } }),
      ),
    );
    const onWindowResize = () => fit.fit();
    addEventListener('resize', onWindowResize);

    void (async () => {
      try {
        const stream = (await envd).process.start(
          {
            process: {
              cmd: '/bin/bash',
              args: ['-i', '-l'],
              envs: { TERM: 'xterm-256color', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' },
            },
            pty: { size: { cols: term.cols, rows: term.rows } },
          },
          {
            signal: abort.signal,
            timeoutMs: SHELL_LIFETIME_MS,
            headers: { 'Keepalive-Ping-Interval': '50' },
          },
        );
        for await (const { event } of stream) {
          const e = event?.event;
          if (e?.case === 'start') {
            pid = e.value.pid;
            setStatus(`connected (pid ${pid})`);
            term.focus();
          } else if (e?.case === 'data' && e.value.output.case) {
            term.write(e.value.output.value);
          } else if (e?.case === 'end') {
            setStatus(`exited: ${e.value.status || e.value.exitCode}`);
          }
        }
      } catch (err) {
        if (!closed) setStatus(`closed: ${err instanceof Error ? err.message : String(err)}`);
      }
    })();

    return () => {
      const p = pid;
      closed = true;
      abort.abort();
      input.dispose();
      resize.dispose();
      removeEventListener('resize', onWindowResize);
      term.dispose();
      // Leaving the stream leaves the shell running in envd: end it.
      if (p !== undefined)
        void envd
          .then((e) =>
            e.process.sendSignal({
              process: { selector: { case: 'pid', value: p } },
              signal: Signal.SIGKILL,
            }),
          )
          .catch(() => undefined);
    };
  }, [id]);
  return (
    <div class="terminal">
      <p class="hint" data-testid="terminal-status">
        {status}
      </p>
      <div ref={box} class="xterm-box" data-testid="terminal" />
    </div>
  );
}
