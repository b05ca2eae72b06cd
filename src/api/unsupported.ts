import { Hono } from 'hono';
import { CoveError } from '../core/errors.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';

/**
 * E2B resources Cove does not serve yet, answered with a clear error instead of "no route".
 * The status is 400 (invalid_argument), chosen against how the SDK reads each status: 404
 * means "no such sandbox" to every sandbox call, 409 makes pause() return false ("already
 * paused"), 403 makes Template.exists() return true, and 503 becomes ServiceBusyError
 * ("retry later"). Any other status becomes `SandboxError("<status>: <message>")` (or
 * BuildError, VolumeError, SecretError), so the message carries the meaning.
 */
export function unsupportedRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const refuse = (what: string): never => {
    throw new CoveError('invalid_argument', `${what} is not supported by Cove yet`);
  };

  const templatesServed = deps.templateBuilder !== undefined;
  for (const [prefix, what] of [
    [
      '/templates',
      'managing templates through the API (templates are recipes in templates/, built by npm start)',
    ],
    [
      '/v2/templates',
      'managing templates through the API (templates are recipes in templates/, built by npm start)',
    ],
    [
      '/v3/templates',
      'managing templates through the API (templates are recipes in templates/, built by npm start)',
    ],
    ['/volumes', 'volumes'],
    ['/volumecontent', 'volumes'],
    ['/secrets', 'secrets'],
  ] as const) {
    if (templatesServed && prefix.endsWith('/templates')) continue;
    if (deps.volumes && what === 'volumes') continue;
    if (deps.secrets && what === 'secrets') continue;
    app.all(prefix, () => refuse(what));
    app.all(`${prefix}/*`, () => refuse(what));
  }

  return app;
}
