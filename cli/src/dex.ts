#!/usr/bin/env node
// Entry point of the compiled `dex` command (bin/dex.js imports dist/dex.js).
import { main } from "./main.js";

await main(process.argv);
