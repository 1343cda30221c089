/**
 * Samples pg_stat_activity (from the monitoring connection) for how many of
 * one application's connections are busy (in a statement or inside a
 * transaction) at a time: a pool always fully busy while the processes are
 * not using their CPU points at the pool size, not the code, as the limit.
 */
import type postgres from "postgres";

export class PoolSampler {
  private readonly samples: Array<{ busy: number; total: number }> = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(admin: postgres.Sql, database: string, applicationName: string, intervalMs = 200) {
    this.loop = (async () => {
      while (this.running) {
        const [row] = await admin<{ busy: number; total: number }[]>`
          select count(*) filter (where state <> 'idle')::int as busy, count(*)::int as total
          from pg_stat_activity where datname = ${database} and application_name = ${applicationName}`;
        this.samples.push(row!);
        await new Promise((resolve) => setTimeout(resolve, intervalMs)); // sampling period, not a synchronisation
      }
    })();
  }

  async stop(): Promise<{ meanBusy: number; maxTotal: number; maxBusy: number }> {
    this.running = false;
    await this.loop;
    const n = this.samples.length || 1;
    const maxTotal = Math.max(0, ...this.samples.map((s) => s.total));
    return {
      meanBusy: this.samples.reduce((sum, s) => sum + s.busy, 0) / n,
      maxTotal,
      maxBusy: Math.max(0, ...this.samples.map((s) => s.busy)),
    };
  }
}
