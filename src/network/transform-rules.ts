import { CoveError } from '../core/errors.ts';

/**
 * Per-domain header transforms (spec 2.11 `rules`): `{ "<domain>": [{ transform: { headers } }] }`.
 * The egress proxy applies them to the HTTP and HTTPS requests a sandbox sends to a matching
 * domain (egress-intercept.ts). Header values may carry placeholders the proxy resolves per
 * request, so that the sandbox only ever sees the placeholder:
 * `${e2b.secrets.<name>}` (a secret of the key that set the rules, src/secrets) and
 * `${e2b.identity.tokens.<name>}` (a workload identity token the sandbox registered with `iam`,
 * minted per request by src/identity; the API checks the name against the sandbox's tokens).
 */
export interface TransformRule {
  transform?: { headers?: Record<string, string> };
}
export type TransformRules = Record<string, TransformRule[]>;

export interface Placeholder {
  kind: 'secret' | 'identity';
  name: string;
  start: number;
  end: number;
}

// Upstream's limits (infra handlers/sandbox_create.go), but for rules per domain (1 there):
// several are applied in order, later ones overriding earlier ones.
const MAX_DOMAINS = 10;
const MAX_RULES_PER_DOMAIN = 8;
const MAX_HEADERS = 20;
const MAX_DOMAIN_LEN = 128;
const MAX_NAME_LEN = 64;
const MAX_VALUE_LEN = 2048;
const MAX_SECRETS_PER_DOMAIN = 32;
const SECRET = '${e2b.secrets.';
const IDENTITY = '${e2b.identity.tokens.';
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
/** Control characters but tab: what an HTTP field value may not hold (RFC 9110 §5.5). */
const CONTROL = /(?!\t)\p{Cc}/u;
/** Headers that frame or route the request: overriding them would break the connection. */
const RESERVED = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'te',
  'trailer',
  'keep-alive',
  'proxy-connection',
]);

const bad = (message: string) => new CoveError('invalid_argument', `network.rules: ${message}`);

/**
 * Validates `rules` as a create or an update gives them (null/undefined: none); domains are
 * lowercased. Throws CoveError('invalid_argument') naming the entry, before anything changes.
 */
export function parseRules(input: unknown): TransformRules {
  if (input === undefined || input === null) return {};
  if (typeof input !== 'object' || Array.isArray(input)) throw bad('must be an object of domain → rules');
  const entries = Object.entries(input as Record<string, unknown>);
  if (entries.length > MAX_DOMAINS) throw bad(`at most ${MAX_DOMAINS} domains`);
  const out: TransformRules = {};
  for (const [rawDomain, list] of entries) {
    const domain = ruleDomain(rawDomain);
    if (!Array.isArray(list)) throw bad(`"${domain}": a list of rules`);
    if (list.length > MAX_RULES_PER_DOMAIN) throw bad(`"${domain}": at most ${MAX_RULES_PER_DOMAIN} rules`);
    const secrets = new Set<string>();
    out[domain] = (list as unknown[]).map((rule) => {
      if (typeof rule !== 'object' || rule === null) throw bad(`"${domain}": each rule is an object`);
      const transform = (rule as { transform?: unknown }).transform;
      if (transform === undefined || transform === null) return {};
      if (typeof transform !== 'object') throw bad(`"${domain}": transform must be an object`);
      const headers = (transform as { headers?: unknown }).headers;
      if (headers === undefined || headers === null) return { transform: {} };
      if (typeof headers !== 'object' || Array.isArray(headers))
        throw bad(`"${domain}": transform.headers must be an object of name → value`);
      const pairs = Object.entries(headers as Record<string, unknown>);
      if (pairs.length > MAX_HEADERS) throw bad(`"${domain}": at most ${MAX_HEADERS} headers per rule`);
      for (const [name, value] of pairs) {
        if (!TOKEN.test(name) || name.length > MAX_NAME_LEN)
          throw bad(`"${domain}": header name "${clip(name)}" is not an HTTP token of 1-${MAX_NAME_LEN}`);
        if (RESERVED.has(name.toLowerCase()))
          throw bad(`"${domain}": header ${name} frames the request and cannot be set`);
        if (typeof value !== 'string' || value.length > MAX_VALUE_LEN || CONTROL.test(value))
          throw bad(
            `"${domain}": the value of ${name} must be a string of at most ${MAX_VALUE_LEN} printable characters`,
          );
        for (const p of placeholders(value)) if (p.kind === 'secret') secrets.add(p.name);
      }
      if (secrets.size > MAX_SECRETS_PER_DOMAIN)
        throw bad(`"${domain}" references more than ${MAX_SECRETS_PER_DOMAIN} secrets`);
      return { transform: { headers: { ...(headers as Record<string, string>) } } };
    });
  }
  return out;
}

/**
 * The placeholders in a header value, left to right; text outside them is opaque. A
 * placeholder without its closing brace, with an empty name or with another one inside is
 * malformed (upstream's networktransform.ParsePlaceholders); the error names no value.
 */
export function placeholders(value: string): Placeholder[] {
  const found: Placeholder[] = [];
  let cursor = 0;
  for (;;) {
    const s = value.indexOf(SECRET, cursor);
    const i = value.indexOf(IDENTITY, cursor);
    if (s < 0 && i < 0) return found;
    const identity = s < 0 || (i >= 0 && i < s);
    const start = identity ? i : s;
    const nameStart = start + (identity ? IDENTITY : SECRET).length;
    const close = value.indexOf('}', nameStart);
    const name = close < 0 ? '' : value.slice(nameStart, close);
    if (close < 0 || name === '' || name.includes('${') || /\p{Cc}/u.test(name))
      throw bad('a header value holds a malformed placeholder (${e2b.secrets.<name>})');
    found.push({
      kind: identity ? 'identity' : 'secret',
      name: identity ? name : name.toLowerCase(),
      start,
      end: close + 1,
    });
    cursor = close + 1;
  }
}

/** Every secret (or identity token) name the rules reference. */
export function secretNames(rules: TransformRules, kind: Placeholder['kind'] = 'secret'): string[] {
  const names = new Set<string>();
  for (const list of Object.values(rules))
    for (const rule of list)
      for (const value of Object.values(rule.transform?.headers ?? {}))
        for (const p of placeholders(value)) if (p.kind === kind) names.add(p.name);
  return [...names];
}

/**
 * The rules for a host name: the exact domain's, else the longest matching `*.` suffix's
 * (matching sets are not merged: the SDK's documented precedence). Undefined: no rules, the
 * connection is not intercepted.
 */
export function rulesFor(
  rules: TransformRules,
  hostname: string,
): { domain: string; rules: TransformRule[] } | undefined {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  const exact = rules[name];
  if (exact) return { domain: name, rules: exact };
  let best: string | undefined;
  for (const domain of Object.keys(rules))
    if (domain.startsWith('*.') && name.endsWith(domain.slice(1)) && (!best || domain.length > best.length))
      best = domain;
  return best ? { domain: best, rules: rules[best]! } : undefined;
}

/** `example.com` or `*.example.com`, lowercased; a bare `*` is refused (SDK docs). */
function ruleDomain(raw: string): string {
  const d = raw.trim().toLowerCase().replace(/\.$/, '');
  const name = d.startsWith('*.') ? d.slice(2) : d;
  const labels = name.split('.');
  if (
    d.length === 0 ||
    d.length > MAX_DOMAIN_LEN ||
    !labels.every((l) => LABEL.test(l)) ||
    /^\d+$/.test(labels.at(-1)!)
  )
    throw bad(`"${clip(raw)}" is not a domain name (example.com or *.example.com; a bare * is not allowed)`);
  return d;
}

const clip = (s: string) => (s.length > 80 ? `${s.slice(0, 80)}…` : s);
