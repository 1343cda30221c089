/**
 * Keeps a long-running command alive until SIGINT or SIGTERM, then runs its
 * cleanup once. A second signal while cleaning up exits at once.
 */
export function runUntilSignal(cleanup: () => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        process.stderr.write(`dex: ${signal} again, exiting without cleanup\n`);
        process.exit(130);
      }
      stopping = true;
      process.stderr.write(`dex: ${signal} received, shutting down\n`);
      cleanup().then(() => {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        resolve();
      }, reject);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
}
