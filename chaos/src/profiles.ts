/**
 * How big each scenario is. `ci` keeps the whole suite to a few minutes on two
 * cores (every fault still happens, just fewer times); `long` is the run by
 * hand whose numbers go into docs/reliability.md. `--workflows N` overrides
 * the workflow count of the load scenarios.
 */
export interface Profile {
  name: "ci" | "long";
  workerKills: {
    workflows: number;
    workflowWorkers: number;
    activityWorkers: number;
    /** Processes with a workflow and an activity worker both, whose activities go out eagerly (issue 12). */
    colocatedWorkers: number;
    /** Kills to do; the scenario stops killing earlier once every run has ended. */
    kills: number;
    /** Pause before each kill, and between a kill and the restart (ms, min..max). */
    killGapMs: [number, number];
    restartDelayMs: [number, number];
    spreadMs: number;
  };
  serverKill: { workflows: number; kills: number; killGapMs: [number, number]; downMs: [number, number]; spreadMs: number };
  /** downMs: how long the server stays down after its graceful exit (a container restart takes seconds). */
  sigterm: { workflows: number; cycles: number; gapMs: [number, number]; downMs: [number, number]; spreadMs: number };
  storm: { starts: number; channels: number; holdMs: number };
  claimRace: { workflows: number; activitiesPerWorkflow: number; pollers: number };
  /** rawPollers: activity pollers in the chaos process that record each acknowledged completion. */
  postgresRestart: { workflows: number; workflowWorkers: number; activityWorkers: number; rawPollers: number; restarts: number; gapMs: [number, number]; downMs: [number, number]; spreadMs: number };
  /** Kill rounds gapMs apart, each terminating 1..maxPerRound sessions, plus the LISTEN session with listenChance. */
  connectionKills: { workflows: number; maxRounds: number; gapMs: [number, number]; maxPerRound: number; listenChance: number; relistenTimeoutMs: number; spreadMs: number };
  /** faults: worker kills and (serverKillChance) server kills; probesPerWindow wake probes before each. */
  threeServers: {
    workflows: number;
    capacity: number;
    activityConcurrency: number;
    activityDelayMs: number;
    faults: number;
    gapMs: [number, number];
    serverKillChance: number;
    downMs: [number, number];
    restartDelayMs: [number, number];
    probesPerWindow: number;
    spreadMs: number;
  };
  /** A schedule firing every second for `seconds`; `kills` server SIGKILLs gapMs apart, each down for downMs. */
  scheduleServers: { seconds: number; kills: number; gapMs: [number, number]; downMs: [number, number] };
  /** Shares of the server's statements failed, and of its COMMITs errored after committing (pg-proxy.ts). */
  commitFaults: { workflows: number; spreadMs: number; statementFailRate: number; commitErrorRate: number };
  /**
   * Each partition: blackholeMs, then halfOpenMs, then heal, gapMs apart. The server runs with a short
   * statement_timeout and stall margin so its connection watchdog acts within seconds; it must answer
   * again within recoverWithinMs of the heal. cutoffs: raw pollers cut off past their lease.
   */
  networkPartition: {
    workflows: number;
    spreadMs: number;
    partitions: number;
    gapMs: [number, number];
    blackholeMs: [number, number];
    halfOpenMs: [number, number];
    statementTimeoutMs: number;
    stallMarginMs: number;
    recoverWithinMs: number;
    cutoffs: number;
  };
  /** Retention under load (scenarios/retention.ts); drainTimeoutMs: how long the last runs may take to be swept. */
  retention: { workflows: number; spreadMs: number; drainTimeoutMs: number };
  /**
   * Continue-as-new chains (scenarios/chains.ts): `chains` instances, each sent `items` item events and
   * continuing as new every `itemsPerRun`; a share (cancelShare) of them cancelled mid-way. Items gapMs apart per
   * chain, chains started over startSpreadMs. Faults faultGapMs apart while the drivers run: a server
   * SIGKILL (serverKillChance; down downMs) or a worker SIGKILL (restarted after downMs).
   */
  chains: {
    chains: number;
    items: number;
    itemsPerRun: number;
    cancelShare: number;
    gapMs: [number, number];
    startSpreadMs: number;
    faultGapMs: [number, number];
    serverKillChance: number;
    downMs: [number, number];
  };
  /** How long the runs of one scenario may take to end after its faults stopped. */
  settleTimeoutMs: number;
}

export const profiles: Record<Profile["name"], Profile> = {
  ci: {
    name: "ci",
    workerKills: { workflows: 150, workflowWorkers: 2, activityWorkers: 2, colocatedWorkers: 1, kills: 10, killGapMs: [800, 2_500], restartDelayMs: [0, 800], spreadMs: 20_000 },
    serverKill: { workflows: 100, kills: 3, killGapMs: [2_000, 4_000], downMs: [200, 1_500], spreadMs: 15_000 },
    sigterm: { workflows: 100, cycles: 3, gapMs: [2_000, 4_000], downMs: [0, 1_500], spreadMs: 15_000 },
    storm: { starts: 200, channels: 8, holdMs: 5_000 },
    claimRace: { workflows: 30, activitiesPerWorkflow: 8, pollers: 16 },
    postgresRestart: { workflows: 100, workflowWorkers: 1, activityWorkers: 1, rawPollers: 4, restarts: 3, gapMs: [3_000, 6_000], downMs: [0, 2_000], spreadMs: 20_000 },
    connectionKills: { workflows: 100, maxRounds: 60, gapMs: [150, 600], maxPerRound: 3, listenChance: 0.25, relistenTimeoutMs: 10_000, spreadMs: 18_000 },
    threeServers: { workflows: 100, capacity: 4, activityConcurrency: 4, activityDelayMs: 400, faults: 8, gapMs: [1_000, 2_500], serverKillChance: 0.35, downMs: [200, 1_500], restartDelayMs: [0, 800], probesPerWindow: 3, spreadMs: 20_000 },
    scheduleServers: { seconds: 60, kills: 3, gapMs: [8_000, 14_000], downMs: [300, 2_000] },
    commitFaults: { workflows: 60, spreadMs: 20_000, statementFailRate: 0.01, commitErrorRate: 0.05 },
    networkPartition: { workflows: 60, spreadMs: 25_000, partitions: 1, gapMs: [3_000, 6_000], blackholeMs: [6_000, 9_000], halfOpenMs: [2_000, 4_000], statementTimeoutMs: 3_000, stallMarginMs: 2_000, recoverWithinMs: 30_000, cutoffs: 2 },
    retention: { workflows: 60, spreadMs: 12_000, drainTimeoutMs: 30_000 },
    chains: { chains: 12, items: 21, itemsPerRun: 3, cancelShare: 0.34, gapMs: [150, 1_200], startSpreadMs: 3_000, faultGapMs: [1_000, 3_000], serverKillChance: 0.4, downMs: [200, 1_500] },
    settleTimeoutMs: 90_000,
  },
  long: {
    name: "long",
    workerKills: { workflows: 5_000, workflowWorkers: 4, activityWorkers: 4, colocatedWorkers: 2, kills: 120, killGapMs: [500, 4_000], restartDelayMs: [0, 2_000], spreadMs: 600_000 },
    serverKill: { workflows: 1_500, kills: 15, killGapMs: [3_000, 10_000], downMs: [100, 5_000], spreadMs: 180_000 },
    sigterm: { workflows: 1_000, cycles: 10, gapMs: [3_000, 10_000], downMs: [0, 3_000], spreadMs: 150_000 },
    storm: { starts: 200, channels: 16, holdMs: 8_000 },
    claimRace: { workflows: 200, activitiesPerWorkflow: 10, pollers: 32 },
    postgresRestart: { workflows: 1_000, workflowWorkers: 2, activityWorkers: 2, rawPollers: 8, restarts: 12, gapMs: [5_000, 15_000], downMs: [0, 5_000], spreadMs: 180_000 },
    connectionKills: { workflows: 1_500, maxRounds: 800, gapMs: [100, 800], maxPerRound: 4, listenChance: 0.2, relistenTimeoutMs: 10_000, spreadMs: 180_000 },
    threeServers: { workflows: 1_500, capacity: 6, activityConcurrency: 5, activityDelayMs: 400, faults: 60, gapMs: [1_000, 4_000], serverKillChance: 0.4, downMs: [100, 3_000], restartDelayMs: [0, 1_500], probesPerWindow: 3, spreadMs: 180_000 },
    scheduleServers: { seconds: 600, kills: 40, gapMs: [5_000, 15_000], downMs: [200, 3_000] },
    commitFaults: { workflows: 1_000, spreadMs: 180_000, statementFailRate: 0.01, commitErrorRate: 0.05 },
    networkPartition: { workflows: 800, spreadMs: 180_000, partitions: 6, gapMs: [5_000, 20_000], blackholeMs: [4_000, 20_000], halfOpenMs: [1_000, 10_000], statementTimeoutMs: 3_000, stallMarginMs: 2_000, recoverWithinMs: 30_000, cutoffs: 6 },
    retention: { workflows: 1_000, spreadMs: 180_000, drainTimeoutMs: 60_000 },
    chains: { chains: 60, items: 150, itemsPerRun: 4, cancelShare: 0.3, gapMs: [100, 2_000], startSpreadMs: 30_000, faultGapMs: [2_000, 8_000], serverKillChance: 0.4, downMs: [100, 3_000] },
    settleTimeoutMs: 300_000,
  },
};
