#!/usr/bin/env node
// The `dex` command. It runs the compiled CLI in ../dist (built by `pnpm build`, which `pnpm install` runs).
import "../dist/dex.js";
