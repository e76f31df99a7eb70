/**
 * `AsyncResult.waitInteractive`: a progress line, redrawn in place, until a call is done
 * (IPython Parallel's `wait_interactive`): on stderr, or in Deno's Jupyter kernel as a progress bar
 * in the running cell.
 *
 * @module
 */
import { checkTimerRange } from "./_timer_range.ts";
import { LiveDisplay } from "./_jupyter_kernel.ts";

/** Options of `AsyncResult.waitInteractive`. */
export interface WaitInteractiveOptions {
  /** How often the line is redrawn, in ms. Default 1000. */
  interval?: number;
  /** How long to wait at most, in ms; the wait then resolves to `false`. Default: no limit. */
  timeout?: number;
  /**
   * Where the line goes, redrawn with a carriage return. Default `Deno.stderr`; in Deno's Jupyter
   * kernel, by default, a display in the running cell (a progress bar and the line) updated in
   * place.
   */
  output?: { writeSync(bytes: Uint8Array): number };
}

/** What {@linkcode waitInteractive} watches: a call and how many of its parts answered. */
export interface Watched {
  readonly progress: number;
  ready(): boolean;
  wait(timeout?: number): Promise<boolean>;
}

/**
 * Waits for `result` as `result.wait(timeout)` does, drawing `"  2/8 tasks finished after    3 s"`
 * (8 being `total`) every `interval` ms and once more, followed by a newline, at the end.
 * Resolves to whether the call is done.
 */
export async function waitInteractive(
  result: Watched,
  total: number,
  options: WaitInteractiveOptions = {},
): Promise<boolean> {
  const { interval = 1000, timeout = Infinity } = options;
  checkTimerRange("wait for result", "interval", interval);
  checkTimerRange("wait for result", "timeout", timeout);
  const encoder = new TextEncoder();
  const started = Date.now();
  const text = () => {
    const seconds = Math.floor((Date.now() - started) / 1000);
    return `${String(result.progress).padStart(4)}/${total} tasks finished after ` +
      `${String(seconds).padStart(4)} s`;
  };
  const cell = options.output === undefined ? LiveDisplay.open(shown(text())) : undefined;
  const output = options.output ?? Deno.stderr;
  const draw = (end: string) => {
    if (cell) return cell.update(shown(text()));
    const bytes = encoder.encode(`\r${text()}${end}`);
    for (let at = 0; at < bytes.byteLength;) at += output.writeSync(bytes.subarray(at));
  };
  /** The line, under a progress bar in HTML. */
  function shown(line: string) {
    return {
      "text/plain": line,
      "text/html": `<div><progress value="${result.progress}" max="${total}"></progress> ` +
        `<code>${line.trim()}</code></div>`,
    };
  }
  const until = started + timeout;
  while (!result.ready()) {
    const left = until - Date.now();
    if (left <= 0) break;
    draw("");
    await result.wait(Math.min(interval, left));
  }
  draw("\n");
  await cell?.flushed();
  return result.ready();
}
