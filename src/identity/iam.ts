import { CoveError } from '../core/errors.ts';

/**
 * E2B's `iam` create option (spec 2.3): named workload identity tokens a sandbox's header rules
 * may name as `${e2b.identity.tokens.<name>}`. Validated as upstream does
 * (infra handlers/sandbox_create.go `buildSandboxIam`: at most 5, a non-empty audience kept
 * exactly as given, tokenType "JWT-SVID"), plus the SDK's rule for names (src/sandbox/iam.ts:
 * no braces or control characters, which would break the placeholder) and bounds on sizes.
 */
export interface IamToken {
  audience: string;
  tokenType: 'JWT-SVID';
}
export type IamTokens = Record<string, IamToken>;

/** A sandbox's registered tokens and the API key that created it (the token's `key_id`). */
export interface SandboxIdentity {
  tokens: IamTokens;
  keyId: string;
}

const MAX_TOKENS = 5;
const MAX_NAME = 64;
const MAX_AUDIENCE = 256;
const BAD_NAME = /[{}\p{Cc}]/u;

const bad = (field: string, message: string) => new CoveError('invalid_argument', `${field}: ${message}`);

/** The tokens of an `iam` body field; none (absent, null, empty): undefined. */
export function parseIam(input: unknown): IamTokens | undefined {
  if (input === undefined || input === null) return undefined;
  if (typeof input !== 'object' || Array.isArray(input)) throw bad('iam', 'must be an object {tokens}');
  const tokens = (input as { tokens?: unknown }).tokens;
  if (tokens === undefined || tokens === null) return undefined;
  if (typeof tokens !== 'object' || Array.isArray(tokens))
    throw bad('iam.tokens', 'must be an object of name → {audience, tokenType}');
  const entries = Object.entries(tokens as Record<string, unknown>).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return undefined;
  if (entries.length > MAX_TOKENS)
    throw bad('iam.tokens', `too many tokens: ${entries.length} (max ${MAX_TOKENS})`);
  const out: IamTokens = {};
  for (const [name, def] of entries) {
    if (name.length === 0 || name.length > MAX_NAME || BAD_NAME.test(name))
      throw bad(
        'iam.tokens',
        `token name ${JSON.stringify(name.slice(0, 80))} must be 1-${MAX_NAME} characters without '{', '}' or control characters`,
      );
    if (typeof def !== 'object' || def === null)
      throw bad(`iam.tokens.${name}`, 'must be {audience, tokenType}');
    const { audience, tokenType } = def as { audience?: unknown; tokenType?: unknown };
    if (typeof audience !== 'string' || audience.length === 0)
      throw bad(`iam.tokens.${name}.audience`, 'audience is required');
    if (audience.length > MAX_AUDIENCE || /\p{Cc}/u.test(audience))
      throw bad(
        `iam.tokens.${name}.audience`,
        `at most ${MAX_AUDIENCE} characters, without control characters`,
      );
    if (tokenType !== 'JWT-SVID') throw bad(`iam.tokens.${name}.tokenType`, 'only "JWT-SVID" is supported');
    out[name] = { audience, tokenType };
  }
  return out;
}
