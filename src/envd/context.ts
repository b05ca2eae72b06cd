import type { IncomingMessage } from 'node:http';
import { createContextKey, createContextValues, type HandlerContext } from '@connectrpc/connect';
import { CoveError } from '../core/errors.ts';
import type { Manager } from '../manager/manager.ts';
import type { SandboxUser } from '../manager/users.ts';

/** The sandbox a request is for, set by the gateway after it checked that the sandbox exists. */
const sandboxKey = createContextKey<string>('', { description: 'sandbox id' });
const sandboxOf = new WeakMap<IncomingMessage, string>();

export function bindSandbox(req: IncomingMessage, id: string): void {
  sandboxOf.set(req, id);
}

export function contextValues(req: IncomingMessage) {
  return createContextValues().set(sandboxKey, sandboxOf.get(req) ?? '');
}

export function sandboxOfRequest(req: IncomingMessage): string {
  const id = sandboxOf.get(req);
  if (!id) throw new CoveError('internal', 'envd request without a sandbox');
  return id;
}

export function sandboxOfCall(ctx: HandlerContext): string {
  const id = ctx.values.get(sandboxKey);
  if (!id) throw new CoveError('internal', 'envd call without a sandbox');
  return id;
}

/**
 * The user a request acts as: `Authorization: Basic base64("<name>:")` (the password is
 * empty and ignored), else the template's default user. An unknown name is
 * `unauthenticated`, as envd answers (`invalid username: 'x'`).
 */
export function usernameFrom(authorization: string | null | undefined): string | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const name = decoded.split(':')[0] ?? '';
  return name === '' ? undefined : name;
}

export async function resolveCaller(
  manager: Manager,
  id: string,
  name: string | undefined,
): Promise<SandboxUser> {
  try {
    return await manager.user(id, name ?? manager.defaultUser(id));
  } catch (err) {
    if (err instanceof CoveError && err.code === 'invalid_argument') {
      throw new CoveError('unauthenticated', `invalid username: '${name}'`, { cause: err });
    }
    throw err;
  }
}
