/**
 * A stack of undo steps. Each side effect pushes its undo as soon as it has succeeded; a
 * failed create or a kill runs the stack once, in reverse, and collects every error instead
 * of stopping at the first, so that one stuck object does not leak the others.
 */
export class CleanupStack {
  #steps: Array<{ name: string; undo: () => Promise<void> | void }> = [];

  push(name: string, undo: () => Promise<void> | void): void {
    this.#steps.push({ name, undo });
  }

  get size(): number {
    return this.#steps.length;
  }

  /** Runs every step once, last first. Throws an AggregateError naming each failed step. */
  async run(): Promise<void> {
    const errors: Error[] = [];
    for (let step = this.#steps.pop(); step; step = this.#steps.pop()) {
      try {
        await step.undo();
      } catch (err) {
        errors.push(new Error(`undo ${step.name}: ${(err as Error).message}`, { cause: err }));
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, errors.map((e) => e.message).join('; '));
  }
}
