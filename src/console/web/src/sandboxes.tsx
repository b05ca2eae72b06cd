import { useState } from 'preact/hooks';
import { api } from './api.ts';
import { age, bytes } from './format.ts';
import { usePoll, useSandboxEvents } from './hooks.ts';
import { Head } from './table.tsx';
import type { Metric, Sandbox } from './types.ts';

interface Listing {
  sandboxes: Sandbox[];
  metrics: Record<string, Metric>;
}

/** `key=value` pairs separated by spaces or commas, as the SDK's metadata filter (spec 2.6). */
function metadataQuery(text: string): string {
  const pairs = text
    .split(/[\s,]+/)
    .filter((p) => p.includes('='))
    .map((p) => {
      const i = p.indexOf('=');
      return `${encodeURIComponent(p.slice(0, i))}=${encodeURIComponent(p.slice(i + 1))}`;
    });
  return pairs.length ? `&metadata=${encodeURIComponent(pairs.join('&'))}` : '';
}

async function load(state: string, metadata: string): Promise<Listing> {
  const sandboxes = await api<Sandbox[]>(`/v2/sandboxes?state=${state}&limit=100${metadataQuery(metadata)}`);
  const running = sandboxes.filter((s) => s.state === 'running').map((s) => s.sandboxID);
  const metrics = running.length
    ? (
        await api<{ sandboxes: Record<string, Metric> }>(
          `/sandboxes/metrics?sandbox_ids=${running.join(',')}`,
        )
      ).sandboxes
    : {};
  return { sandboxes, metrics };
}

export function SandboxesPage() {
  const [state, setState] = useState('running,paused');
  const [template, setTemplate] = useState('');
  const [metadata, setMetadata] = useState('');
  // Creates, pauses and kills are pushed; the poll refreshes CPU and memory (sampled every 5 s).
  const { data, error, reload } = usePoll(() => load(state, metadata), 5000, [state, metadata]);
  const live = useSandboxEvents(reload);
  const templates = [...new Set(data?.sandboxes.map((s) => s.templateID))].sort();
  const shown = (data?.sandboxes ?? []).filter((s) => template === '' || s.templateID === template);
  return (
    <section>
      <h2>
        Sandboxes{' '}
        <span class="hint" data-live={String(live)}>
          {live ? '● live' : '○ polling'}
        </span>
      </h2>
      <div class="filters">
        <label>
          State{' '}
          <select value={state} onChange={(e) => setState(e.currentTarget.value)}>
            <option value="running,paused">all</option>
            <option value="running">running</option>
            <option value="paused">paused</option>
          </select>
        </label>
        <label>
          Template{' '}
          <select value={template} onChange={(e) => setTemplate(e.currentTarget.value)}>
            <option value="">all</option>
            {templates.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </label>
        <label>
          Metadata{' '}
          <input
            placeholder="key=value"
            value={metadata}
            onChange={(e) => setMetadata(e.currentTarget.value)}
          />
        </label>
      </div>
      {error && <p class="error">{error.message}</p>}
      <table class="sandboxes">
        <Head cols={['ID', 'State', 'Template', 'Backend', 'Age', 'CPU', 'Memory', 'Metadata']} />
        <tbody>
          {shown.map((s) => {
            const m = data?.metrics[s.sandboxID];
            return (
              <tr key={s.sandboxID} data-id={s.sandboxID}>
                <td>
                  <a href={`#/sandboxes/${s.sandboxID}`}>{s.sandboxID}</a>
                </td>
                <td>
                  <span class={`state ${s.state}`}>{s.state}</span>
                </td>
                <td>{s.templateID}</td>
                <td>{s.runtime ?? ''}</td>
                <td>{age(s.startedAt)}</td>
                <td>{m ? `${m.cpuUsedPct.toFixed(1)} % of ${s.cpuCount}` : ''}</td>
                <td>{m ? `${bytes(m.memUsed)} / ${bytes(m.memTotal)}` : `${s.memoryMB} MiB`}</td>
                <td class="meta">
                  {Object.entries(s.metadata)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(' ')}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {data && shown.length === 0 && <p class="empty">No sandboxes.</p>}
    </section>
  );
}
