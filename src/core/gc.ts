import { setFlagsFromString } from 'node:v8';

/**
 * V8's garbage collector tuned for a server that moves files: every HTTP body chunk Node
 * hands over is a fresh 64 KiB ArrayBuffer, and by default V8 answers each ~16–32 MiB of new
 * ArrayBuffer memory with a full mark-compact of the whole heap (external-memory pressure):
 * 3–5 of them, 150–300 ms of CPU, per 64 MiB upload (`--trace-gc`, docs/benchmarks.md).
 * Accounted in the global heap limit instead, that memory is collected on the heap's own
 * schedule (0–2 full GCs per upload, ~30 % less server CPU); the price is up to ~100 MiB of
 * dead ArrayBuffers held until then. The flag is read at each allocation check, so setting
 * it at start-up takes effect for the process (Node does not freeze V8 flags).
 */
export function tuneGc(): void {
  setFlagsFromString('--external-memory-accounted-in-global-limit');
}
