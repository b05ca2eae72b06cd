import { useEffect, useState } from 'preact/hooks';
import { FileType, type EntryInfo } from '../../../gen/filesystem/filesystem_pb.js';
import { envdOf, readFile, writeFile, type Envd } from './envd.ts';
import { bytes, time } from './format.ts';
import { Head } from './table.tsx';

const parentOf = (dir: string) => dir.replace(/\/[^/]*$/, '') || '/';
const join = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);

/** Hands `blob` to the browser as a download named `name` (the browser cleans the name). */
function save(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * A sandbox's files through envd as the SDK reaches them: ListDir and Stat over Connect,
 * downloads and uploads over `/files`, as the template's default user. Names come from the
 * sandbox and are shown as text (JSX escapes them).
 */
export function FileBrowser({ id }: { id: string }) {
  const [envd, setEnvd] = useState<Envd>();
  const [dir, setDir] = useState<string>();
  const [entries, setEntries] = useState<EntryInfo[]>();
  const [error, setError] = useState<string>();
  const [tick, setTick] = useState(0);
  const fail = (err: unknown) => setError(err instanceof Error ? err.message : String(err));

  useEffect(() => {
    let live = true;
    envdOf(id)
      .then(async (e) => {
        const home = await e.filesystem.stat({ path: '' });
        if (!live) return;
        setEnvd(e);
        setDir(home.entry?.path ?? '/');
      })
      .catch(fail);
    return () => {
      live = false;
    };
  }, [id]);

  useEffect(() => {
    if (!envd || dir === undefined) return;
    let live = true;
    setError(undefined);
    envd.filesystem
      .listDir({ path: dir, depth: 1 })
      .then((r) => {
        if (!live) return;
        const sorted = [...r.entries].sort(
          (a, b) =>
            Number(b.type === FileType.DIRECTORY) - Number(a.type === FileType.DIRECTORY) ||
            a.name.localeCompare(b.name),
        );
        setEntries(sorted);
      })
      .catch(fail);
    return () => {
      live = false;
    };
  }, [envd, dir, tick]);

  const upload = (input: HTMLInputElement) => {
    if (!envd || dir === undefined || !input.files) return;
    const files = [...input.files];
    Promise.all(files.map((f) => writeFile(envd, join(dir, f.name), f)))
      .then(() => setTick((t) => t + 1))
      .catch(fail)
      .finally(() => (input.value = ''));
  };

  if (!envd || dir === undefined) return <p class="empty">{error ?? 'Opening…'}</p>;
  return (
    <div class="files">
      <div class="filters">
        <span class="mono path" data-testid="files-path">
          {dir}
        </span>
        <button onClick={() => setTick((t) => t + 1)}>Refresh</button>
        <label class="upload">
          Upload{' '}
          <input type="file" multiple onChange={(e) => upload(e.currentTarget)} aria-label="Upload files" />
        </label>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <table class="files">
        <Head cols={['Name', 'Size', 'Owner', 'Mode', 'Modified', '']} />
        <tbody>
          {dir !== '/' && (
            <tr>
              <td colSpan={6}>
                <button class="linkish" onClick={() => setDir(parentOf(dir))}>
                  ..
                </button>
              </td>
            </tr>
          )}
          {(entries ?? []).map((e) => (
            <tr key={e.path} data-name={e.name}>
              <td class="text">
                {e.type === FileType.DIRECTORY ? (
                  <button class="linkish" onClick={() => setDir(e.path)}>
                    {e.name}/
                  </button>
                ) : (
                  e.name
                )}
              </td>
              <td>{e.type === FileType.DIRECTORY ? '' : bytes(Number(e.size))}</td>
              <td>{`${e.owner}:${e.group}`}</td>
              <td class="mono">{e.permissions}</td>
              <td class="time">{e.modifiedTime ? time(Number(e.modifiedTime.seconds) * 1000) : ''}</td>
              <td>
                {e.type === FileType.FILE && (
                  <button
                    class="small"
                    onClick={() => {
                      readFile(envd, e.path)
                        .then((b) => save(b, e.name))
                        .catch(fail);
                    }}
                  >
                    Download
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
