// Preloaded into the `dex workflow replay` process by bench/replay/run.ts: reports the process's
// peak resident set (getrusage maxrss, KiB on Linux) on stderr as it exits.
import { writeSync } from "node:fs";

process.on("exit", () => writeSync(2, `maxrss_kib=${process.resourceUsage().maxRSS}\n`));
