/** Host side of the agent protocol (spec/agent-protocol.md). */
export { connectAgent } from './client.ts';
export type * from './types.ts';
export { releaseChunk } from './protocol.ts';
