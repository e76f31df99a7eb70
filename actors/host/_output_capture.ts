// What a running task prints with `console`, kept per task: `log`/`info`/`debug` go to its
// stdout, `error`/`warn` to its stderr. Output made outside a task prints as usual.
import { AsyncLocalStorage } from "node:async_hooks";

/** Where the `console` output of one running task goes, line by line. */
export interface Output {
  stdout: string[];
  stderr: string[];
}

const capture = new AsyncLocalStorage<Output>();
let consolePatched = false;

/** Routes `console` output made inside {@linkcode withOutput} to its `output`. Idempotent. */
export function captureConsole(): void {
  if (consolePatched) return;
  consolePatched = true;
  const streams: [keyof Output, string[]][] = [
    ["stdout", ["log", "info", "debug"]],
    ["stderr", ["error", "warn"]],
  ];
  for (const [stream, methods] of streams) {
    for (const method of methods) {
      const original = (console as unknown as Record<string, (...a: unknown[]) => void>)[method];
      (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        const store = capture.getStore();
        if (!store) return original.apply(console, args);
        store[stream].push(
          args.map((a) => (typeof a === "string" ? a : Deno.inspect(a))).join(" "),
        );
      };
    }
  }
}

/** Runs `fn` with the `console` output it makes (and its asynchronous work makes) in `output`. */
export function withOutput<T>(output: Output, fn: () => T): T {
  return capture.run(output, fn);
}

/** The output of the task running now, when one is. */
export function currentOutput(): Output | undefined {
  return capture.getStore();
}
