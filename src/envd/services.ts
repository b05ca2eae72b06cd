import type { ServiceRegistration } from './index.ts';

/** Every Connect service envd serves; each registers its RPCs (envd/process, envd/filesystem). */
export const envdServices: ServiceRegistration[] = [];
