/**
 * The range of a timer's delay: `setTimeout` fires at once for a delay over 2³¹−1 ms, so a
 * deadline that long is refused where it is given.
 *
 * @module
 */

/** The longest delay a timer takes (2³¹−1 ms, about 24.8 days); a longer one fires at once. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Throws `RangeError` when `ms` is finite and longer than a timer can wait: it would fire at once.
 * `Infinity` (no deadline) is accepted.
 */
export function checkTimerRange(what: string, name: string, ms: number | undefined): void {
  if (typeof ms === "number" && Number.isFinite(ms) && ms > MAX_TIMEOUT_MS) {
    throw new RangeError(
      `Cannot ${what}: ${name} must be at most ${MAX_TIMEOUT_MS} ms (about 24.8 days), or Infinity, got ${ms}`,
    );
  }
}
