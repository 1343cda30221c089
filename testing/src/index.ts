export { createEmptyDatabase, createTestDatabase } from "./database.js";
export type { TestDatabase } from "./database.js";
export { waitFor } from "./wait-for.js";
