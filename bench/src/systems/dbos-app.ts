/**
 * Names the DBOS processes of the bench share: the enqueuer (a DBOSClient),
 * the DBOS runner and the bench process that reads DBOS's tables. Constants
 * only, so the bench process can import them without loading the DBOS SDK.
 */

/** The application name of every DBOS process; the enqueuer's client acts for it, so the runner owns what it enqueues. */
export const DBOS_APP = "dex-bench";
/** Schema of DBOS's system tables (its default). */
export const DBOS_SCHEMA = "dbos";

/** Scenario 4: the workflow queue the backlog is enqueued on, and the workflow it runs. */
export const DBOS_BACKLOG_QUEUE = "bench_backlog";
export const DBOS_BACKLOG_WORKFLOW = "backlogWorkflow";

/**
 * The backlog queue's flow control. workerConcurrency 100: at most 100 of its
 * workflows run at once in the consuming process, the 100 slots dex's
 * workflow worker has in scenario 4 (without it, DBOS's first dequeue would
 * claim the whole backlog in one transaction). minPollingIntervalMs: DBOS's
 * dispatcher dequeues on a timer (by default every 1,000 ms, up to
 * workerConcurrency runs each time), whereas dex's worker long-polls and gets
 * tasks as its slots free up. With 10,000 runs on this machine the drain went
 * at about 100/s with the default 1,000 ms (the timer's limit), 650/s with
 * 100 ms, 1,500/s with 10 ms (dequeues then claim about 60 of the 100 slots:
 * slots are refilled as they free up) and no faster with 1 ms. 10 ms, so that
 * the timer does not set the pace.
 */
export const DBOS_BACKLOG_QUEUE_OPTIONS = { workerConcurrency: 100, minPollingIntervalMs: 10 } as const;
