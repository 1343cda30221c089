/**
 * The default deadline, long on purpose: it bounds how long a broken test
 * hangs, not how fast the code must be. Waits of a few seconds timed out with
 * the machine at a load of 8-29 (issue 11); a condition that is never met
 * still fails the test, only later. Speed is the benchmark's business (bench/).
 * Below vitest's 60 s test timeout, so that it fails with its own message.
 */
export const DEFAULT_WAIT_MS = 45_000;

/**
 * vitest timeout of an end-to-end test (tests/e2e: real processes, the CLI spawned per command).
 * The tests of tests/e2e/auth took 38-47 s each at a load of 13, and ran past vitest's 60 s at a
 * load of 8-29 (issue 11). Long, like DEFAULT_WAIT_MS: it bounds a hang, not a speed requirement.
 */
export const E2E_TEST_TIMEOUT_MS = 300_000;

/**
 * Waits for a condition with a deadline: the test suite's only way to wait.
 * Never a bare sleep standing in for synchronisation.
 */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  options: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value as T;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = options.message ?? "condition";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${why}`, { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
