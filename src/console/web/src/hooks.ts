import { useEffect, useState } from 'preact/hooks';
import { ApiError, openStream } from './api.ts';

/** Loads `load()` now and every `everyMs`; `reload` re-runs it at once (after an action). */
export function usePoll<T>(load: () => Promise<T>, everyMs: number, deps: unknown[] = []) {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError | Error>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = () => {
      load()
        .then((d) => {
          if (!live) return;
          setData(d);
          setError(undefined);
        })
        .catch((err: unknown) => live && setError(err instanceof Error ? err : new Error(String(err))))
        .finally(() => {
          if (live) timer = setTimeout(run, everyMs);
        });
    };
    run();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [tick, ...deps]);
  return { data, error, reload: () => setTick((t) => t + 1) };
}

/** The part of the URL after `#`, kept in state. */
export function useHash(): string {
  const [hash, setHash] = useState(location.hash.slice(1) || '/sandboxes');
  useEffect(() => {
    const f = () => setHash(location.hash.slice(1) || '/sandboxes');
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  return hash;
}

/**
 * Calls `onChange` (at most every 250 ms) whenever Cove says a sandbox was created, paused or
 * killed (`/cove/v1/sandbox-events`, Server-Sent Events read through fetch so the key stays in
 * a header); reconnects 5 s after the stream breaks. Returns whether the stream is open.
 */
export function useSandboxEvents(onChange: () => void): boolean {
  const [open, setOpen] = useState(false);
  useEffect(() => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let pending: ReturnType<typeof setTimeout> | undefined;
    const changed = () => {
      pending ??= setTimeout(() => {
        pending = undefined;
        onChange();
      }, 250);
    };
    const connect = async () => {
      try {
        const res = await openStream('/cove/v1/sandbox-events', abort.signal);
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        setOpen(true);
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          const events = buffer.split('\n\n');
          buffer = events.pop() ?? '';
          if (events.some((e) => /^event: (created|paused|killed)$/m.test(e))) changed();
        }
      } catch {
        // broken or refused: try again below (a refused key has signed the tab out)
      }
      setOpen(false);
      if (!abort.signal.aborted) timer = setTimeout(() => void connect(), 5000);
    };
    void connect();
    return () => {
      abort.abort();
      clearTimeout(timer);
      clearTimeout(pending);
    };
  }, []);
  return open;
}
