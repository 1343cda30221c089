/**
 * The server's database connection fails at statement boundaries (pg-proxy.ts):
 * a share of statements never reach Postgres (the connection is cut as they
 * are sent, so Postgres rolls the transaction back), and a share of COMMITs
 * do commit but their caller sees a connection error instead of the answer.
 * The second is the hard one: the server must not act as if the transaction
 * failed (the SDK retries its call, and the retry must find the work done,
 * neither doing it again nor losing it). The usual chaosOrder load runs
 * through two workflow and two activity worker processes; the workers' own
 * database use (chaos.executions) does not go through the proxy.
 */
import { check, type Scenario } from "../environment.js";
import { PgProxy } from "../pg-proxy.js";
import { settle, startCluster, startOrders } from "./common.js";
import { noInternalErrors } from "./server-log.js";

export const commitFaults: Scenario = {
  name: "commit-faults",
  summary: "a proxy before Postgres fails a share of statements, and errors a share of COMMITs after they committed",
  async run(ctx) {
    const p = ctx.profile.commitFaults;
    const n = ctx.workflows(p.workflows);
    const proxy = await PgProxy.inFrontOf(ctx.databaseUrl);
    try {
      const cluster = await startCluster(ctx, { workflow: 2, activity: 2 }, { databaseUrl: proxy.url(ctx.databaseUrl) });
      // From here on: the server's start itself needs its first statements to succeed.
      proxy.faults = { statementFailRate: p.statementFailRate, commitErrorRate: p.commitErrorRate, rng: ctx.rng.fork("pg-proxy") };
      ctx.log(`server's database through the proxy on port ${proxy.tcp.port}: failing ${p.statementFailRate * 100}% of statements, erroring ${p.commitErrorRate * 100}% of COMMITs after they commit`);
      const stats = await startOrders(ctx, cluster.client, "cf", n, p.spreadMs);
      proxy.faults = undefined;
      // What happened while faults were on (the counts go on counting statements).
      const c = { ...proxy.counts, failed: new Map(proxy.counts.failed) };
      const failedStatements = proxy.failedStatements;
      const failedBy = [...c.failed].sort((a, b) => b[1] - a[1]).map(([word, k]) => `${k} ${word}`).join(", ");
      ctx.log(`faults off: ${c.statements} statements, ${failedStatements} failed, ${c.committedThenErrored} committed-then-errored`);
      const settled = await settle(ctx, stats);
      // The server saw its connections die dozens of times: it must still shut down cleanly.
      const exit = await cluster.server.stop("SIGTERM");
      return {
        did: [
          `${stats.runs.size} workflows started (${stats.retries} start calls retried); 2 workflow and 2 activity worker processes`,
          `${c.statements} statements (${c.commits} COMMITs) through the proxy while faults were on`,
          `${failedStatements} statements failed (connection cut before sending): ${failedBy || "none"}`,
          `${c.committedThenErrored} COMMITs committed-then-errored (answer dropped, connection cut)` +
            (c.rolledBackThenErrored ? `; ${c.rolledBackThenErrored} more whose transaction had already failed (Postgres answered ROLLBACK)` : ""),
          `${proxy.tcp.stats.connections} connections opened through the proxy, ${proxy.tcp.stats.cut} cut`,
          settled.line,
          `server stopped with SIGTERM afterwards: exit code ${exit.code} in ${exit.ms} ms`,
        ],
        expect: { runs: settled.runs },
        checks: [
          ...settled.checks,
          check(
            "commit faults: both kinds of fault happened",
            failedStatements > 0 && c.committedThenErrored > 0,
            `${failedStatements} failed statements, ${c.committedThenErrored} committed-then-errored COMMITs`,
          ),
          check("commit faults: the server exits 0 on SIGTERM afterwards", exit.code === 0, `code ${exit.code}, signal ${exit.signal}`),
          await noInternalErrors(ctx, cluster.server),
        ],
      };
    } finally {
      await proxy.close();
    }
  },
};
