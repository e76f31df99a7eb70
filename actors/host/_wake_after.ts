/**
 * One coarse timer wheel per thread for the many short waits of tree reductions.
 *
 * @module
 */

/**
 * Calls to make once their time (`performance.now()`) has come, checked every `WAKE_TICK_MS` by
 * one interval for all the waits of this thread, which runs only while there are some: a wait
 * that ends within milliseconds, as most do, neither sets nor clears a timer.
 */
const wakes = new Set<{ at: number; run: () => void }>();
const WAKE_TICK_MS = 25;
let wakeTimer: ReturnType<typeof setInterval> | undefined;

/** Calls `run` after about `ms` (up to `WAKE_TICK_MS` later). Returns the function that cancels. */
export function wakeAfter(ms: number, run: () => void): () => void {
  const wake = { at: performance.now() + ms, run };
  wakes.add(wake);
  wakeTimer ??= setInterval(() => {
    const now = performance.now();
    for (const due of wakes) {
      if (due.at > now) continue;
      wakes.delete(due);
      due.run();
    }
    stopWakesWhenNone();
  }, WAKE_TICK_MS);
  return () => {
    wakes.delete(wake);
    stopWakesWhenNone();
  };
}

function stopWakesWhenNone(): void {
  if (wakes.size > 0 || wakeTimer === undefined) return;
  clearInterval(wakeTimer);
  wakeTimer = undefined;
}
