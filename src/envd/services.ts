import { filesystemService } from './filesystem/service.ts';
import type { ServiceRegistration } from './index.ts';
import { processService } from './process/service.ts';

/** Every Connect service envd serves; each registers its RPCs (envd/process, envd/filesystem). */
export const envdServices: ServiceRegistration[] = [processService, filesystemService];
