/**
 * Live workflow executions by run id, least recently used first out. A run
 * is taken out while one of its tasks is processed and put back only after
 * the server accepted that task's commands, so a failed or abandoned task
 * always evicts it (the next task replays from history).
 */
import type { WorkflowExecution } from "../workflow/execution.js";

export class RunCache {
  private readonly runs = new Map<string, WorkflowExecution>();

  constructor(private readonly capacity: number) {}

  get size(): number {
    return this.runs.size;
  }

  /** Removes and returns the run's execution if it is at exactly `historyLength`. */
  take(runId: string, historyLength: number): WorkflowExecution | undefined {
    const execution = this.runs.get(runId);
    this.runs.delete(runId);
    return execution && execution.historyLength === historyLength ? execution : undefined;
  }

  put(runId: string, execution: WorkflowExecution): void {
    if (this.capacity <= 0) return;
    this.runs.delete(runId);
    this.runs.set(runId, execution);
    while (this.runs.size > this.capacity) {
      const oldest = this.runs.keys().next().value as string;
      this.runs.delete(oldest);
    }
  }

  /** The run's execution without taking it out or refreshing its place (a query reads it, worker/query-tasks.ts). */
  peek(runId: string): WorkflowExecution | undefined {
    return this.runs.get(runId);
  }

  has(runId: string): boolean {
    return this.runs.has(runId);
  }
}
