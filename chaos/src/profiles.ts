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
  /** How long the runs of one scenario may take to end after its faults stopped. */
  settleTimeoutMs: number;
}

export const profiles: Record<Profile["name"], Profile> = {
  ci: {
    name: "ci",
    workerKills: { workflows: 150, workflowWorkers: 2, activityWorkers: 2, kills: 10, killGapMs: [800, 2_500], restartDelayMs: [0, 800], spreadMs: 20_000 },
    serverKill: { workflows: 100, kills: 3, killGapMs: [2_000, 4_000], downMs: [200, 1_500], spreadMs: 15_000 },
    sigterm: { workflows: 100, cycles: 3, gapMs: [2_000, 4_000], downMs: [0, 1_500], spreadMs: 15_000 },
    storm: { starts: 200, channels: 8, holdMs: 5_000 },
    claimRace: { workflows: 30, activitiesPerWorkflow: 8, pollers: 16 },
    settleTimeoutMs: 90_000,
  },
  long: {
    name: "long",
    workerKills: { workflows: 5_000, workflowWorkers: 4, activityWorkers: 4, kills: 120, killGapMs: [500, 4_000], restartDelayMs: [0, 2_000], spreadMs: 600_000 },
    serverKill: { workflows: 1_500, kills: 15, killGapMs: [3_000, 10_000], downMs: [100, 5_000], spreadMs: 180_000 },
    sigterm: { workflows: 1_000, cycles: 10, gapMs: [3_000, 10_000], downMs: [0, 3_000], spreadMs: 150_000 },
    storm: { starts: 200, channels: 16, holdMs: 8_000 },
    claimRace: { workflows: 200, activitiesPerWorkflow: 10, pollers: 32 },
    settleTimeoutMs: 300_000,
  },
};
