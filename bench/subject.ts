/**
 * One runtime under test. The runner interleaves subjects iteration by iteration, so that a
 * noisy stretch of the machine hits every runtime alike. A subject takes part in the
 * scenarios whose methods it has (cove-curl only moves files, for instance).
 */
export interface Subject {
  /** Short name shown in the table: cove, cove-http, crun, podman. */
  runtime: string;
  /** One line on what exactly is measured, for the JSON and docs. */
  notes: string[];
  /** Create runs for this subject (podman may use fewer); undefined: the default. */
  createRuns?: number;
  roundTripRuns?: number;
  /**
   * Creates a sandbox, runs `true` in it to its exit, and (where the runtime does not do it
   * already) removes it. Resolves with phase durations in ms: `total` is create + first
   * command; `kill`, when present, is the removal, timed separately.
   */
  create?(): Promise<Record<string, number>>;
  /** Starts the long-lived sandbox that round trips and file transfers run in. */
  startLong?(): Promise<void>;
  /** One `true` in the long-lived sandbox, to its exit; resolves with ms. */
  roundTrip?(): Promise<number>;
  /** One `/bin/bash -l -c true` (what the e2b SDK's `commands.run('true')` runs); ms. */
  shellRoundTrip?(): Promise<number>;
  /**
   * Moves the bench's file (`--files-mib`) into the long-lived sandbox and back out; each
   * resolves with ms and checks the size that arrived.
   */
  transfer?: {
    write(): Promise<number>;
    read(): Promise<number>;
    /** The e2b SDK's `useOctetStream: true` upload (the body is the file), beside its default. */
    writeOctet?(): Promise<number>;
  };
  /**
   * Removes everything the subject made, even after a failure; safe to call twice. Resolves
   * with what it found left behind and could not remove (empty when clean).
   */
  cleanup(): Promise<string[]>;
}
