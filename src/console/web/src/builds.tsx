import { useEffect, useState } from 'preact/hooks';
import { api } from './api.ts';
import { age, time } from './format.ts';
import { usePoll } from './hooks.ts';
import { Head } from './table.tsx';
import type { Build, BuildLogEntry } from './types.ts';

/** The status route's page size (templates.ts): a shorter page means the log's end. */
const PAGE = 100;
const done = (status: string | undefined) => status === 'ready' || status === 'error';

/**
 * A build's log, followed live as the SDK follows it (E2B's build status route with
 * `logsOffset`): each second while it is waiting or building, until it is ready or failed.
 * Lines come from the build's commands and are shown as text.
 */
function BuildLog({ build }: { build: Build }) {
  const [entries, setEntries] = useState<BuildLogEntry[]>([]);
  const [status, setStatus] = useState<string>(build.status);
  const [error, setError] = useState<string>();
  useEffect(() => {
    let live = true;
    let offset = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setEntries([]);
    const path = `/templates/${encodeURIComponent(build.templateID)}/builds/${build.buildID}/status`;
    const run = async () => {
      try {
        for (;;) {
          const r = await api<{ status: string; logEntries: BuildLogEntry[] }>(
            `${path}?logsOffset=${offset}&limit=${PAGE}`,
          );
          if (!live) return;
          offset += r.logEntries.length;
          if (r.logEntries.length) setEntries((e) => [...e, ...r.logEntries]);
          setStatus(r.status);
          if (r.logEntries.length < PAGE) {
            if (done(r.status)) return; // its last line is written before its status
            break;
          }
        }
      } catch (err) {
        if (live) setError(err instanceof Error ? err.message : String(err));
      }
      if (live) timer = setTimeout(() => void run(), 1000);
    };
    void run();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [build.buildID, build.templateID]);
  return (
    <div class="build-log" data-status={status}>
      <h3>
        Build {build.buildID} of {build.templateID}: <span class={`state ${status}`}>{status}</span>
        {!done(status) && ' (following)'}
      </h3>
      {error && <p class="error">{error}</p>}
      <table class="logs">
        <tbody>
          {entries.map((l, i) => (
            <tr key={i} class={`level-${l.level}`}>
              <td class="time">{time(l.timestamp)}</td>
              <td>{l.step ?? ''}</td>
              <td class="text">{l.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Template builds, newest first (`/cove/v1/builds`); one opens to its live log. */
export function Builds() {
  const { data, error } = usePoll(() => api<Build[]>('/cove/v1/builds?limit=50'), 3000);
  const [open, setOpen] = useState<Build>();
  return (
    <>
      {error && <p class="error">{error.message}</p>}
      {data && data.length === 0 && (
        <p class="empty">No builds yet (Template.build() or `cove template build`).</p>
      )}
      {data && data.length > 0 && (
        <table class="builds">
          <Head cols={['Build', 'Template', 'Tags', 'Status', 'Started', 'Took', 'Error']} />
          <tbody>
            {data.map((b) => (
              <tr key={b.buildID} data-id={b.buildID}>
                <td class="mono">
                  <button class="linkish" onClick={() => setOpen(b)}>
                    {b.buildID.slice(0, 8)}
                  </button>
                </td>
                <td>{b.templateID}</td>
                <td>{b.tags.join(', ')}</td>
                <td>
                  <span class={`state ${b.status}`}>{b.status}</span>
                </td>
                <td class="time">{time(b.createdAt)}</td>
                <td>{b.finishedAt ? age(b.createdAt, new Date(b.finishedAt).getTime()) : ''}</td>
                <td class="text">{b.reason ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {open && <BuildLog build={open} />}
    </>
  );
}
