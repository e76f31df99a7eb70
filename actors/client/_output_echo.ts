/**
 * `streamOutput`: what engines printed for a call, each line prefixed `[engine N]`, written as
 * each engine's answer arrives: to this process's stdout and stderr, or, in Deno's Jupyter
 * kernel, into the cell that made the call, whichever cell runs when the answer arrives.
 *
 * @module
 */
import type { Outcome } from "./async_result.ts";
import { inJupyterKernel, LiveDisplay } from "./_jupyter_kernel.ts";

const encoder = new TextEncoder();

/** Echoes engine output for a client; `forCall()` is called when each call is made. */
export class OutputEcho {
  readonly #enabled: boolean;
  /** The cell display of the calls made in the current task: they share it. */
  #turn: CellText | undefined;

  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  /** What echoes the output of the call made now, returning its outcome. */
  forCall(): (outcome: Outcome) => Outcome {
    if (!this.#enabled) return (outcome) => outcome;
    if (!inJupyterKernel()) {
      return (outcome) => {
        const printed = printedBy(outcome);
        if (printed?.stdout) Deno.stdout.writeSync(encoder.encode(printed.stdout));
        if (printed?.stderr) Deno.stderr.writeSync(encoder.encode(printed.stderr));
        return outcome;
      };
    }
    if (this.#turn === undefined) {
      // Opened now, while the calling cell runs: the call's lines are shown in it.
      this.#turn = new CellText();
      setTimeout(() => (this.#turn = undefined), 0);
    }
    const cell = this.#turn;
    return (outcome) => {
      const printed = printedBy(outcome);
      if (printed) cell.append(printed.stdout + printed.stderr);
      return outcome;
    };
  }
}

/** What `outcome`'s engine printed, each line prefixed with its engine, if it printed anything. */
function printedBy(outcome: Outcome): { stdout: string; stderr: string } | undefined {
  if (!("result" in outcome)) return undefined;
  const { engineId, stdout, stderr } = outcome.result;
  if (!stdout && !stderr) return undefined;
  const prefix = (text: string | undefined) =>
    (text ?? "").replace(/^(?=.)/gm, `[engine ${engineId}] `);
  return { stdout: prefix(stdout), stderr: prefix(stderr) };
}

/** Text in a cell of Deno's Jupyter kernel, growing as lines come. */
class CellText {
  #text = "";
  readonly #display = LiveDisplay.open({});

  append(text: string): void {
    this.#text += text;
    this.#display?.update({ "text/plain": this.#text });
  }
}
