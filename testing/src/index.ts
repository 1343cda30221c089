export { createEmptyDatabase, createTestDatabase } from "./database.js";
export type { TestDatabase } from "./database.js";
export { DEFAULT_WAIT_MS, waitFor } from "./wait-for.js";
