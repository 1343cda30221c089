#!/usr/bin/env node
// Entry point of the `dex` command (`pnpm dex ...` runs it with tsx).
import { main } from "./main.js";

await main(process.argv);
