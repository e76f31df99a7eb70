/**
 * The progress bar of a cluster's start: the engines registered out of those expected.
 *
 * @module
 */
import { LiveDisplay } from "./_jupyter_kernel.ts";

/**
 * Draws the count of engines registered: in the running cell of Deno's Jupyter kernel, a display
 * updated in place; elsewhere a line on stderr, redrawn with a carriage return.
 */
export function progressBar(total: number | undefined): (count: number, done?: boolean) => void {
  const encoder = new TextEncoder();
  const started = Date.now();
  const width = 30;
  const draw = (count: number, done: boolean) => {
    const filled = total ? Math.round((count / total) * width) : 0;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const text = `engines ${count}/${total ?? "?"} [${"#".repeat(filled)}${
      " ".repeat(width - filled)
    }] ${seconds}s`;
    const html = `<div><progress value="${count}" max="${total ?? count}"></progress> ` +
      `engines ${count}/${total ?? "?"}${
        done && count === total ? " up" : ""
      } after ${seconds} s</div>`;
    return { text, html };
  };
  const first = draw(0, false);
  const display = LiveDisplay.open({ "text/plain": first.text, "text/html": first.html });
  if (display) {
    let shown = 0;
    let at = started;
    return (count, done = false) => {
      // A changed count at once; the time at most twice a second.
      if (!done && count === shown && Date.now() - at < 500) return;
      shown = count;
      at = Date.now();
      const { text, html } = draw(count, done);
      display.update({ "text/plain": text, "text/html": html });
    };
  }
  return (count, done = false) => {
    const line = `\r${draw(count, done).text}${done ? "\n" : ""}`;
    Deno.stderr.writeSync(encoder.encode(line));
  };
}
