/** Ended runs with history, written straight in SQL: a million runs through the API would take most of an hour. */
import type postgres from "postgres";

/**
 * `runs` COMPLETED runs of `queue`, each with `events` history events of
 * ~60 bytes (about a small run's), ended `endedSecondsAgo` ago, inserted
 * 50,000 runs per transaction so no single statement runs for minutes.
 */
export async function insertEndedRuns(
  sql: postgres.Sql,
  o: { queue: string; runs: number; events: number; endedSecondsAgo: number },
): Promise<void> {
  const chunk = 50_000;
  for (let done = 0; done < o.runs; done += chunk) {
    const n = Math.min(chunk, o.runs - done);
    await sql.begin(async (tx) => {
      await tx`
        create temporary table new_runs on commit drop as
        select gen_random_uuid() as id from generate_series(1, ${n})`;
      await tx`
        insert into dex.runs (id, instance_id, workflow_name, task_queue, status, history_length, history_size, created_at, started_at, ended_at)
        select id, 'ended-' || id, 'backlogWorkflow', ${o.queue}, 'COMPLETED', ${o.events}, ${o.events * 60},
               now() - make_interval(secs => ${o.endedSecondsAgo + 1}), now() - make_interval(secs => ${o.endedSecondsAgo + 1}),
               now() - make_interval(secs => ${o.endedSecondsAgo})
        from new_runs`;
      await tx`
        insert into dex.history_events (run_id, sequence, kind, event)
        select id, s, 'marker', decode(repeat('ab', 60), 'hex') from new_runs, generate_series(1, ${o.events}) as s`;
    });
  }
}
