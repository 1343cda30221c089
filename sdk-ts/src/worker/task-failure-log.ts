/**
 * A run whose workflow code has a bug fails its task again on every retry
 * (back-off 1 s doubling to 10 s on the server): logging each attempt would
 * bury everything else. This worker logs a run's failing task the first time
 * it sees it fail (with the stack), then every `every` attempts, and again
 * from the start once a task of the run completed.
 */
export class TaskFailureLog {
  private readonly logged = new Set<string>();

  constructor(
    readonly every: number,
    /** Runs remembered; the oldest is forgotten first (it then logs again once). */
    private readonly capacity = 10_000,
  ) {}

  /** "first" (log with the stack), "repeat" (log one line) or undefined (stay quiet) for this failed attempt. */
  onFailure(runId: string, attempt: number): "first" | "repeat" | undefined {
    if (!this.logged.has(runId)) {
      this.logged.add(runId);
      if (this.logged.size > this.capacity) this.logged.delete(this.logged.values().next().value as string);
      return "first";
    }
    return attempt % this.every === 0 ? "repeat" : undefined;
  }

  /** A task of the run completed: a later failure is news again. */
  onSuccess(runId: string): void {
    this.logged.delete(runId);
  }
}
