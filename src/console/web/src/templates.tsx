import { api } from './api.ts';
import { Builds } from './builds.tsx';
import { bytes, time } from './format.ts';
import { usePoll } from './hooks.ts';
import { Head } from './table.tsx';
import type { Template } from './types.ts';

export function TemplatesPage() {
  const templates = usePoll(() => api<Template[]>('/cove/v1/templates'), 10_000);
  const pools = usePoll(() => api<Record<string, { ready: number; target: number }>>('/cove/v1/pools'), 3000);
  return (
    <section>
      <h2>Templates</h2>
      {templates.error && <p class="error">{templates.error.message}</p>}
      <table class="templates">
        <Head cols={['Name', 'Tag', 'Source', 'Build', 'Built', 'Disk']} />
        <tbody>
          {(templates.data ?? []).map((t) => (
            <tr key={`${t.name}:${t.tag}`}>
              <td>{t.name}</td>
              <td>{t.tag}</td>
              <td>{t.source}</td>
              <td class="mono">{t.build.slice(0, 12)}</td>
              <td>{t.builtAt ? time(t.builtAt) : ''}</td>
              <td>{bytes(t.diskBytes)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Builds</h2>
      <Builds />
      <h2>Warm pools</h2>
      <PoolsTable pools={pools.data} />
    </section>
  );
}

/** Warm sandboxes ready and wanted, per template (`/cove/v1/pools`, `/cove/v1/host`). */
export function PoolsTable({
  pools,
}: {
  pools: Record<string, { ready: number; target: number }> | undefined;
}) {
  if (pools && Object.keys(pools).length === 0)
    return <p class="empty">No pools (COVE_POOL_MAX is 0, or no template asked for yet).</p>;
  return (
    <table class="pools">
      <Head cols={['Template', 'Ready', 'Target']} />
      <tbody>
        {Object.entries(pools ?? {}).map(([name, p]) => (
          <tr key={name}>
            <td>{name}</td>
            <td>{p.ready}</td>
            <td>{p.target}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
