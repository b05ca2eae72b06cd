import { api } from './api.ts';
import { bytes } from './format.ts';
import { usePoll } from './hooks.ts';
import { Head } from './table.tsx';
import { PoolsTable } from './templates.tsx';
import type { HostHealth } from './types.ts';

/** A share used, as a bar; `detail` says it in numbers. */
function Gauge({ title, used, detail }: { title: string; used: number; detail: string }) {
  const pct = Math.min(100, Math.max(0, used * 100));
  return (
    <figure class="gauge" data-gauge={title}>
      <figcaption>
        {title}: <strong>{pct.toFixed(0)} %</strong> used — {detail}
      </figcaption>
      <div class="bar">
        <div class={pct > 90 ? 'fill hot' : 'fill'} style={{ width: `${pct}%` }} />
      </div>
    </figure>
  );
}

/** The host's health: CPU, memory and disk headroom, sandboxes per backend, warm pools. */
export function HostPage() {
  const { data: h, error } = usePoll(() => api<HostHealth>('/cove/v1/host'), 3000);
  if (!h) return error ? <p class="error">{error.message}</p> : null;
  const states = [...new Set(Object.values(h.sandboxes).flatMap((s) => Object.keys(s)))].sort();
  return (
    <section>
      <h2>Host</h2>
      <div class="gauges">
        <Gauge title="CPU" used={h.cpuBusyRatio} detail={`${h.cpus} CPUs, load ${h.load1.toFixed(2)}`} />
        <Gauge
          title="Memory"
          used={1 - h.memoryAvailableBytes / h.memoryBytes}
          detail={`${bytes(h.memoryAvailableBytes)} available of ${bytes(h.memoryBytes)}`}
        />
        <Gauge
          title="Disk"
          used={1 - h.diskAvailableBytes / h.diskBytes}
          detail={`${bytes(h.diskAvailableBytes)} free of ${bytes(h.diskBytes)} (COVE_HOME)`}
        />
      </div>
      <h3>Sandboxes by backend</h3>
      {Object.keys(h.sandboxes).length === 0 ? (
        <p class="empty">No sandboxes.</p>
      ) : (
        <table class="backends">
          <Head cols={['Backend', ...states]} />
          <tbody>
            {Object.entries(h.sandboxes).map(([backend, byState]) => (
              <tr key={backend} data-backend={backend}>
                <td>{backend}</td>
                {states.map((s) => (
                  <td key={s}>{byState[s] ?? 0}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {h.microvm && (
        <p class="accelerator" data-accelerator={h.microvm.name}>
          MicroVM accelerator:{' '}
          <strong>{h.microvm.name === 'kvm' ? 'KVM' : 'TCG (software emulation)'}</strong>
          {h.microvm.decided ? '' : ' (not started yet)'} — {h.microvm.why}
        </p>
      )}
      <h3>Warm pools</h3>
      <PoolsTable pools={h.pools} />
    </section>
  );
}
