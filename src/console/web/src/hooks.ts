import { useEffect, useState } from 'preact/hooks';
import { ApiError } from './api.ts';

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
