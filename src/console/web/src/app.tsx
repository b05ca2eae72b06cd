import { useEffect, useState } from 'preact/hooks';
import { ApiError, onSignOut, signedIn, signIn, signOut } from './api.ts';
import { useHash } from './hooks.ts';
import { SandboxPage } from './sandbox.tsx';
import { SandboxesPage } from './sandboxes.tsx';
import { TemplatesPage } from './templates.tsx';
import { KeysPage } from './keys.tsx';
import { HostPage } from './host.tsx';

function Login({ onDone }: { onDone: () => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = (e: Event) => {
    e.preventDefault();
    setBusy(true);
    signIn(key)
      .then(onDone)
      .catch((err: unknown) =>
        setError(
          err instanceof ApiError && err.status === 401
            ? 'This key was refused.'
            : `Could not sign in: ${err instanceof Error ? err.message : String(err)}`,
        ),
      )
      .finally(() => setBusy(false));
  };
  return (
    <form class="login" onSubmit={submit}>
      <h1>Cove</h1>
      <label>
        API key
        <input
          name="key"
          type="password"
          autocomplete="off"
          placeholder="e2b_…"
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
        />
      </label>
      <button type="submit" disabled={busy || key.trim() === ''}>
        Sign in
      </button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <p class="hint">
        The key stays in this tab (sessionStorage) and is forgotten after 30 minutes idle. Make one with{' '}
        <code>cove keys create</code>.
      </p>
    </form>
  );
}

function Page({ route }: { route: string }) {
  const sandbox = /^\/sandboxes\/([a-z0-9]+)$/.exec(route)?.[1];
  if (sandbox) return <SandboxPage id={sandbox} />;
  if (route === '/templates') return <TemplatesPage />;
  if (route === '/keys') return <KeysPage />;
  if (route === '/host') return <HostPage />;
  return <SandboxesPage />;
}

export function App() {
  const [authed, setAuthed] = useState(signedIn());
  const route = useHash();
  useEffect(() => onSignOut(() => setAuthed(false)), []);
  if (!authed) return <Login onDone={() => setAuthed(true)} />;
  const tab = ['/templates', '/keys', '/host'].find((t) => route.startsWith(t))?.slice(1) ?? 'sandboxes';
  return (
    <>
      <header>
        <strong>Cove</strong>
        <nav>
          <a href="#/sandboxes" class={tab === 'sandboxes' ? 'active' : ''}>
            Sandboxes
          </a>
          <a href="#/templates" class={tab === 'templates' ? 'active' : ''}>
            Templates &amp; pools
          </a>
          <a href="#/keys" class={tab === 'keys' ? 'active' : ''}>
            API keys
          </a>
          <a href="#/host" class={tab === 'host' ? 'active' : ''}>
            Host
          </a>
        </nav>
        <button class="link" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        <Page route={route} />
      </main>
    </>
  );
}
