// What a task can do to the thread its engine host shares with other engines, short of killing
// the process, must not hurt them: an uncaught error or unhandled rejection from a task's
// background work is reported and the host goes on; `Deno.exit()` called in a task throws there
// (the task fails with it) instead of ending the host and its engines.

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
