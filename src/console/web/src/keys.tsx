import { useState } from 'preact/hooks';
import { api, send } from './api.ts';
import { time } from './format.ts';
import { usePoll } from './hooks.ts';
import { Head } from './table.tsx';
import type { ApiKey } from './types.ts';

function Revoke({ k, done }: { k: ApiKey; done: () => void }) {
  const [confirm, setConfirm] = useState(false);
  const [error, setError] = useState<string>();
  if (!confirm)
    return (
      <button class="small danger" onClick={() => setConfirm(true)}>
        Revoke
      </button>
    );
  return (
    <>
      <button
        class="small danger"
        onClick={() => {
          send('DELETE', `/cove/v1/keys/${k.id}`)
            .then(done)
            .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)));
        }}
      >
        Really revoke {k.id}?
      </button>
      {error && <span class="error">{error}</span>}
    </>
  );
}

/**
 * The API keys (`/cove/v1/keys`): list, create (the new key is shown here once) and revoke.
 * Revoking a key also revokes the keys it made here; revoking this tab's own key signs out.
 */
export function KeysPage() {
  const { data, error, reload } = usePoll(() => api<{ keys: ApiKey[] }>('/cove/v1/keys'), 10_000);
  const [name, setName] = useState('');
  const [made, setMade] = useState<{ id: string; key: string }>();
  const [failed, setFailed] = useState<string>();
  const create = (e: Event) => {
    e.preventDefault();
    setFailed(undefined);
    send<ApiKey & { key: string }>('POST', '/cove/v1/keys', { name: name.trim() || 'console' })
      .then((k) => {
        setMade({ id: k.id, key: k.key });
        setName('');
        reload();
      })
      .catch((err: unknown) => setFailed(err instanceof Error ? err.message : String(err)));
  };
  return (
    <section>
      <h2>API keys</h2>
      <form class="filters" onSubmit={create}>
        <label>
          Name{' '}
          <input
            value={name}
            maxLength={64}
            placeholder="ci"
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <button type="submit">Create key</button>
        {failed && <span class="error">{failed}</span>}
      </form>
      {made && (
        <p class="new-key" role="status">
          New key {made.id}: <code data-testid="new-key">{made.key}</code> — copy it now, it is not shown
          again. <button onClick={() => setMade(undefined)}>Done</button>
        </p>
      )}
      {error && <p class="error">{error.message}</p>}
      <table class="keys">
        <Head cols={['ID', 'Name', 'Key', 'Created', 'Last used', 'Made by', '']} />
        <tbody>
          {(data?.keys ?? []).map((k) => (
            <tr key={k.id} data-id={k.id}>
              <td class="mono">{k.id}</td>
              <td>
                {k.name}
                {k.current && <em> (this key)</em>}
              </td>
              <td class="mono">{k.mask}</td>
              <td class="time">{time(k.createdAt)}</td>
              <td class="time">{k.lastUsedAt ? time(k.lastUsedAt) : '–'}</td>
              <td class="mono">{k.createdBy ?? '–'}</td>
              <td>
                <Revoke k={k} done={reload} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="hint">
        Every key may use and manage everything on this Cove. Revoking a key also revokes the keys made with
        it here.
      </p>
    </section>
  );
}
