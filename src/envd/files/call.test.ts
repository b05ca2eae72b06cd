import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { CoveError } from '../../core/errors.ts';
import { createLogger } from '../../core/log.ts';
import type { EnvdDeps } from '../index.ts';
import { HttpError, errnoOf, replyError } from './call.ts';

function fakeRes() {
  const sent: { status?: number; body?: string } = {};
  const res = {
    headersSent: false,
    writeHead(status: number) {
      sent.status = status;
      return res;
    },
    end(body: string) {
      sent.body = body;
    },
  };
  return { res: res as unknown as ServerResponse, sent };
}

describe('/files errors', () => {
  const deps = { log: createLogger('silent') } as EnvdDeps;
  const reply = (err: unknown) => {
    const { res, sent } = fakeRes();
    replyError(deps, res, err);
    return { status: sent.status, ...(JSON.parse(sent.body!) as { code: number; message: string }) };
  };

  it("answers envd's statuses with {code, message}", () => {
    expect(reply(new HttpError(401, 'invalid signature'))).toEqual({
      status: 401,
      code: 401,
      message: 'invalid signature',
    });
    expect(reply(new CoveError('not_found', 'x'))).toMatchObject({ status: 404, code: 404 });
    expect(reply(new CoveError('invalid_argument', 'x'))).toMatchObject({ status: 400 });
    // A full disk, whichever step hit it, is envd's 507 (the SDK's NotEnoughSpaceError).
    expect(reply(new CoveError('resource_exhausted', 'write /home/user/f: ENOSPC (write)'))).toEqual({
      status: 507,
      code: 507,
      message: 'not enough disk space available',
    });
    expect(reply(new CoveError('resource_exhausted', 'write /f: EDQUOT (open)')).status).toBe(507);
    expect(reply(new CoveError('resource_exhausted', 'read /f: EMFILE (too many open streams)')).status).toBe(
      429,
    );
    expect(reply(new Error('secret detail'))).toEqual({ status: 500, code: 500, message: 'internal error' });
  });

  it('reads the errno an agent refusal carried', () => {
    expect(errnoOf(new CoveError('invalid_argument', 'write /tmp: EISDIR (open)'))).toBe('EISDIR');
    expect(errnoOf(new CoveError('invalid_argument', 'no errno here'))).toBeUndefined();
    expect(errnoOf(new Error('x: ENOSPC'))).toBeUndefined();
  });
});
