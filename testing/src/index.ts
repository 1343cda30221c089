export { createEmptyDatabase, createTestDatabase } from "./database.js";
export type { TestDatabase } from "./database.js";
export { DEFAULT_WAIT_MS, E2E_TEST_TIMEOUT_MS, waitFor } from "./wait-for.js";
