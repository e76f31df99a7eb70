/** Small async helpers shared by the test suites: the only waits a test needs. */

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with a clear message when `promise` takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `check` every few milliseconds until it holds; fails naming `what` (or what it returns,
 * for a message that says what was seen) after `timeoutMs`.
 */
export async function waitUntil(
  what: string | (() => string),
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) {
      const said = typeof what === "string" ? what : what();
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${said}`);
    }
    await delay(5);
  }
}

/** A countdown latch: `done` resolves once `countDown()` has been called `count` times. */
export interface Latch {
  /** Resolves when the count reaches zero. */
  readonly done: Promise<void>;
  /** How many `countDown()` calls are still missing. */
  readonly remaining: number;
  /** Counts one down; calls past zero do nothing. */
  countDown(): void;
}

/** A {@linkcode Latch} of `count` (1: a gate that `countDown()` opens). */
export function latch(count = 1): Latch {
  let remaining = count;
  let open!: () => void;
  const done = new Promise<void>((resolve) => (open = resolve));
  if (remaining <= 0) open();
  return {
    done,
    get remaining() {
      return remaining;
    },
    countDown() {
      if (remaining > 0 && --remaining === 0) open();
    },
  };
}

/** A timer that only records whether it has fired; see {@linkcode alarm}. */
export interface Alarm extends Disposable {
  /** Whether `ms` have passed since the alarm was set. */
  readonly fired: boolean;
}

/**
 * Sets an alarm for `ms`, for ordering checks such as "the rejection came after the deadline's
 * timer fired" (a deadline is not met early), never "it took less than N ms". `using` clears it.
 */
export function alarm(ms: number): Alarm {
  let fired = false;
  const timer = setTimeout(() => (fired = true), ms);
  return {
    get fired() {
      return fired;
    },
    [Symbol.dispose]: () => clearTimeout(timer),
  };
}
