import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, send } from './api.ts';
import { Chart } from './chart.tsx';
import { age, bytes, fieldsLine, time } from './format.ts';
import { usePoll } from './hooks.ts';
import { Head } from './table.tsx';
import type { AuditEvent, LogEntry, Metric, Sandbox } from './types.ts';

function Actions({ s, done }: { s: Sandbox; done: () => void }) {
  const [busy, setBusy] = useState(false);
  const [confirmKill, setConfirmKill] = useState(false);
  const [error, setError] = useState<string>();
  const act = (what: () => Promise<unknown>, after = done) => {
    setBusy(true);
    setError(undefined);
    what()
      .then(after)
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  const id = s.sandboxID;
  return (
    <div class="actions">
      {s.state === 'running' && (
        <button disabled={busy} onClick={() => act(() => send('POST', `/sandboxes/${id}/pause`, {}))}>
          Pause
        </button>
      )}
      {s.state === 'paused' && (
        <button disabled={busy} onClick={() => act(() => send('POST', `/sandboxes/${id}/resume`, {}))}>
          Resume
        </button>
      )}
      {confirmKill ? (
        <button
          class="danger"
          disabled={busy}
          onClick={() =>
            act(
              () => send('DELETE', `/sandboxes/${id}`),
              () => (location.hash = '#/sandboxes'),
            )
          }
        >
          Really kill {id}?
        </button>
      ) : (
        <button class="danger" disabled={busy} onClick={() => setConfirmKill(true)}>
          Kill
        </button>
      )}
      {error && <span class="error">{error}</span>}
    </div>
  );
}

function Metrics({ id }: { id: string }) {
  const { data } = usePoll(() => api<Metric[]>(`/sandboxes/${id}/metrics`), 5000, [id]);
  if (!data || data.length === 0) return <p class="empty">No samples yet (one every 5 s).</p>;
  const last = data[data.length - 1]!;
  return (
    <div class="charts">
      <Chart
        title="CPU"
        points={data.map((m) => [m.timestampUnix, m.cpuUsedPct])}
        max={100}
        label={(v) => `${v.toFixed(1)} %`}
      />
      <Chart
        title="Memory"
        points={data.map((m) => [m.timestampUnix, m.memUsed])}
        max={last.memTotal}
        label={bytes}
      />
      <Chart
        title="Disk written"
        points={data.map((m) => [m.timestampUnix, m.diskUsed])}
        max={Math.max(...data.map((m) => m.diskUsed), 1)}
        label={bytes}
      />
    </div>
  );
}

function Logs({ id }: { id: string }) {
  const { data } = usePoll(() => api<{ logs: LogEntry[] }>(`/v2/sandboxes/${id}/logs?limit=500`), 3000, [id]);
  if (!data) return null;
  if (data.logs.length === 0) return <p class="empty">No log lines.</p>;
  return (
    <table class="logs">
      <tbody>
        {data.logs.map((l) => (
          <tr class={`level-${l.level}`}>
            <td class="time">{time(l.timestamp)}</td>
            <td>{l.level}</td>
            <td class="text">
              {l.message} <span class="fields">{fieldsLine(l.fields)}</span>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Audit({ id }: { id: string }) {
  const { data, error } = usePoll(
    () => api<{ events: AuditEvent[]; dropped?: number }>(`/cove/v1/audit?sandbox=${id}&limit=500`),
    3000,
    [id],
  );
  if (error) return <p class="empty">{error.message}</p>;
  if (!data) return null;
  return (
    <>
      {data.events.length === 0 && (
        <p class="empty">No records this key may see (its own sandboxes' only).</p>
      )}
      {data.dropped ? (
        <p class="hint">{data.dropped} older records were dropped (per-sandbox bound).</p>
      ) : null}
      <table class="audit">
        <Head cols={['Time', 'Action', 'Outcome', 'Key', 'Details']} />
        <tbody>
          {data.events.map((e) => (
            <tr key={e.seq} data-action={e.action}>
              <td class="time">{time(e.at)}</td>
              <td>{e.action}</td>
              <td>{e.outcome}</td>
              <td>{e.keyId ?? '–'}</td>
              <td class="text">{fieldsLine(e.fields)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/** xterm.js and the Connect client are most of the console's script: loaded when first opened. */
const loadTools = () => Promise.all([import('./terminal.tsx'), import('./files.tsx')]);

function Tool({ what, id }: { what: 'terminal' | 'files'; id: string }) {
  const [mods, setMods] = useState<Awaited<ReturnType<typeof loadTools>>>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    loadTools()
      .then(setMods)
      .catch((err: unknown) => setError(String(err)));
  }, []);
  if (!mods) return <p class="empty">{error ?? 'Loading…'}</p>;
  const [{ TerminalView }, { FileBrowser }] = mods;
  return what === 'terminal' ? <TerminalView id={id} /> : <FileBrowser id={id} />;
}

/** The terminal and the file browser: opened on demand, each over the sandbox's envd. */
function Tools({ id }: { id: string }) {
  const [open, setOpen] = useState<'terminal' | 'files'>();
  const toggle = (what: 'terminal' | 'files') => setOpen(open === what ? undefined : what);
  return (
    <>
      <div class="actions">
        <button onClick={() => toggle('terminal')}>
          {open === 'terminal' ? 'Close terminal' : 'Terminal'}
        </button>
        <button onClick={() => toggle('files')}>{open === 'files' ? 'Close files' : 'Files'}</button>
      </div>
      {open && <Tool what={open} id={id} />}
    </>
  );
}

export function SandboxPage({ id }: { id: string }) {
  const { data: s, error, reload } = usePoll(() => api<Sandbox>(`/sandboxes/${id}`), 3000, [id]);
  if (error instanceof ApiError && error.status === 404)
    return (
      <section>
        <p class="empty">
          Sandbox {id} is gone. <a href="#/sandboxes">All sandboxes</a>
        </p>
      </section>
    );
  if (!s) return error ? <p class="error">{error.message}</p> : null;
  return (
    <section class="sandbox">
      <p>
        <a href="#/sandboxes">Sandboxes</a> / <strong>{id}</strong>
      </p>
      <dl>
        <dt>State</dt>
        <dd>
          <span class={`state ${s.state}`}>{s.state}</span>
        </dd>
        <dt>Template</dt>
        <dd>{s.templateID}</dd>
        <dt>Backend</dt>
        <dd>{s.runtime ?? ''}</dd>
        <dt>Started</dt>
        <dd>
          {time(s.startedAt)} ({age(s.startedAt)} ago)
        </dd>
        <dt>Ends</dt>
        <dd>{time(s.endAt)}</dd>
        <dt>Limits</dt>
        <dd>
          {s.cpuCount} CPU, {s.memoryMB} MiB
        </dd>
        <dt>Metadata</dt>
        <dd class="meta">{fieldsLine(s.metadata)}</dd>
      </dl>
      <Actions s={s} done={reload} />
      {s.state === 'running' && <Tools id={id} />}
      <h3>Metrics</h3>
      <Metrics id={id} />
      <h3>Logs</h3>
      <Logs id={id} />
      <h3>Audit trail</h3>
      <Audit id={id} />
    </section>
  );
}
