#!/usr/bin/env node
// Entry point of the compiled `dex` command (bin/dex.js imports dist/dex.js).
import { main } from "./main.js";

// `dex workflow history RUN | head`: the reader went away, which is not an error worth a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

await main(process.argv);
