/**
 * Output in the cell of Deno's Jupyter kernel, when this process is that kernel: a display that
 * is shown once and then updated in place (a progress bar, the lines engines printed).
 *
 * Deno's kernel sends what `Deno.jupyter.broadcast` gives, and what is written to stdout or
 * stderr, as a child of the last cell it was asked to run, whichever cell made the write. A
 * display sent by a cell keeps its place in that cell: an update with its `display_id`, sent
 * however late, replaces what the display shows there. So each display here is opened while its
 * cell runs, and every later change is such an update.
 *
 * @module
 */

/** What this file uses of `Deno.jupyter` (Deno 2.9.6). */
interface JupyterApi {
  broadcast(type: string, content: Record<string, unknown>): Promise<void>;
}

/**
 * The content of a display: the same thing as plain text and, when given, as HTML. With neither,
 * the display takes its place in the cell and shows nothing yet.
 */
export type DisplayData = { "text/plain"?: string; "text/html"?: string };

let kernel: JupyterApi | null | undefined;

/** `Deno.jupyter` when this process is Deno's Jupyter kernel, else `undefined`. */
function jupyterApi(): JupyterApi | undefined {
  if (kernel === undefined) {
    try {
      // Outside `deno jupyter`, reading `Deno.jupyter` throws.
      const api = Reflect.get(Deno, "jupyter") as JupyterApi | undefined;
      kernel = typeof api?.broadcast === "function" ? api : null;
    } catch {
      kernel = null;
    }
  }
  return kernel ?? undefined;
}

/** Whether this process is Deno's Jupyter kernel. */
export function inJupyterKernel(): boolean {
  return jupyterApi() !== undefined;
}

let displays = 0;

/**
 * A display in the cell that runs now, updated in place by {@linkcode LiveDisplay.update}.
 * Messages go out in order; one the kernel cannot send is dropped (the cell shows the last that
 * went out).
 */
export class LiveDisplay {
  readonly #api: JupyterApi;
  readonly #id = `deno-parallel-${Deno.pid}-${++displays}-${crypto.randomUUID()}`;
  #sent: Promise<void>;
  #last: DisplayData;

  /** Opens the display in the cell that runs now, showing `data`. */
  private constructor(api: JupyterApi, data: DisplayData) {
    this.#api = api;
    this.#last = data;
    this.#sent = this.#send("display_data", data);
  }

  /** A display in the running cell, or `undefined` outside Deno's Jupyter kernel. */
  static open(data: DisplayData): LiveDisplay | undefined {
    const api = jupyterApi();
    return api && new LiveDisplay(api, data);
  }

  /** Shows `data` in place of what the display showed, unless it is the same. */
  update(data: DisplayData): void {
    const last = this.#last;
    if (last["text/plain"] === data["text/plain"] && last["text/html"] === data["text/html"]) {
      return;
    }
    this.#last = data;
    this.#sent = this.#send("update_display_data", data);
  }

  /** Resolves once every message so far went out (or failed to). */
  flushed(): Promise<void> {
    return this.#sent;
  }

  #send(type: string, data: DisplayData): Promise<void> {
    const previous = this.#sent ?? Promise.resolve();
    return previous.then(() =>
      this.#api.broadcast(type, { data, metadata: {}, transient: { display_id: this.#id } })
    ).catch(() => {});
  }
}
