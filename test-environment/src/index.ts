/**
 * @dex/test-environment: test dex workflows in your own test suite against a real dex server
 * (embedded Postgres, the server in-process), with time skipping and mocked activities. Kept
 * apart from @dex/sdk, which stays gRPC + protobuf only.
 */
export { TestEnvironment } from "./test-environment.js";
export type { TestEnvironmentOptions, TestWorker, TestWorkerOptions } from "./test-environment.js";
export type { TimeSkipStats } from "./time-skipper.js";
