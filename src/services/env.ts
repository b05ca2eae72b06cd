import type { Principal } from './quotas.ts';

/** What every services route reads: who calls (set by the listener's own authentication). */
export interface ServicesEnv {
  Variables: { principal: Principal; keyId: string };
}
