import { CoveError } from '../../core/errors.ts';
import type { ProviderConfig } from '../config.ts';

/** Model name → provider, from the operator's configuration. The first provider listing a name wins. */
export function createModelMap(providers: ProviderConfig[]) {
  const byModel = new Map<string, ProviderConfig>();
  for (const p of providers) for (const m of p.models) if (!byModel.has(m)) byModel.set(m, p);

  return {
    models(): Array<{ id: string; provider: ProviderConfig }> {
      return [...byModel].map(([id, provider]) => ({ id, provider }));
    },

    /** The provider of `model` for an endpoint of wire format `api`; clear errors otherwise. */
    resolve(model: unknown, api: ProviderConfig['api']): ProviderConfig {
      if (providers.length === 0)
        throw new CoveError('unavailable', 'no model provider configured (services.json: providers)');
      if (typeof model !== 'string' || model === '')
        throw new CoveError('invalid_argument', 'model: a model name is required');
      const p = byModel.get(model);
      if (!p)
        throw new CoveError(
          'not_found',
          `model '${model}' is not served here; GET /v1/models lists the models (${[...byModel.keys()].slice(0, 20).join(', ')})`,
        );
      if (p.api !== api)
        throw new CoveError(
          'invalid_argument',
          `model '${model}' is served by an ${p.api} provider: call it through ${p.api === 'anthropic' ? '/v1/messages' : '/v1/chat/completions'}`,
        );
      return p;
    },
  };
}

export type ModelMap = ReturnType<typeof createModelMap>;
