// What a task can do to the thread its engine host shares with other engines, short of killing
// the process, must not hurt them: an uncaught error or unhandled rejection from a task's
// background work is reported and the host goes on; `Deno.exit()` called in a task throws there
// (the task fails with it) instead of ending the host and its engines. So is a `Worker` made
// with `deno.permissions`: without `--unstable-worker-options`, Deno ends the whole process for it
// (exit 70), and whether the flag is on cannot be asked without that risk.

/** Options of {@linkcode guardHost}. */
export interface HostGuardOptions {
  /** Reports an uncaught error or unhandled rejection, said in one line. */
  uncaught(message: string): void;
  /** Replaces more ways to end the thread (`self.close` in a Worker) with `refuse`. */
  replace?: (refuse: (what: string) => never) => void;
}

/** The error a task gets for trying to end its host. */
export function exitRefused(what: string): Error {
  return new Deno.errors.NotCapable(
    `Cannot call ${what} in a task: it would end the engine host and every engine on it ` +
      "(return or throw from the task instead)",
  );
}

let reporter: ((message: string) => void) | undefined;

/**
 * Reports, as the guard of this thread does its own, an uncaught error or unhandled rejection of
 * a task's background work elsewhere (a sandboxed engine's task realm), said in one line.
 */
export function reportUncaught(message: string): void {
  reporter?.(message);
}

/**
 * Guards this thread, an engine host's, as the module says. Returns the real `Deno.exit`, for
 * the host's own use.
 */
export function guardHost(options: HostGuardOptions): (code?: number) => never {
  const exit = Deno.exit;
  const refuse = (what: string): never => {
    throw exitRefused(what);
  };
  Object.defineProperty(Deno, "exit", {
    configurable: true,
    value: () => refuse("Deno.exit()"),
  });
  options.replace?.(refuse);
  reporter = options.uncaught;
  guardWorkers();
  const report = (event: Event, what: string, error: unknown) => {
    event.preventDefault();
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    options.uncaught(`${what} ${detail}`);
  };
  globalThis.addEventListener(
    "error",
    (event) =>
      report(event, "Uncaught", (event as ErrorEvent).error ?? (event as ErrorEvent).message),
  );
  globalThis.addEventListener(
    "unhandledrejection",
    (event) => report(event, "Uncaught (in promise)", (event as PromiseRejectionEvent).reason),
  );
  return exit;
}

/** Replaces `Worker` with one that refuses `deno.permissions` (see the module comment). */
function guardWorkers(): void {
  const Base = globalThis.Worker;
  if (typeof Base !== "function") return;
  class GuardedWorker extends Base {
    constructor(specifier: string | URL, options?: WorkerOptions) {
      const deno = (options as { deno?: { permissions?: unknown } } | undefined)?.deno;
      if (deno?.permissions !== undefined) {
        throw new Deno.errors.NotCapable(
          "Cannot create a Worker with deno.permissions in a task: without " +
            "--unstable-worker-options it would end the engine host and every engine on it " +
            "(leave deno.permissions out: the worker then has the engine's permissions)",
        );
      }
      super(specifier, options);
    }
  }
  Object.defineProperty(globalThis, "Worker", {
    configurable: true,
    writable: true,
    value: GuardedWorker,
  });
}
