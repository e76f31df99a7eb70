/**
 * The client of a cluster: knows its engines and makes views on them.
 *
 * @module
 */
import { EngineDiedError } from "../errors.ts";
import type { Transport } from "../transport/types.ts";
import { ActorSystem } from "./system.ts";
import { DirectView } from "./view.ts";

/** Options of {@linkcode Client}. */
export interface ClientOptions {
  /** The actor system the client speaks through. */
  system: ActorSystem;
  /** The ids of the engines, sorted. */
  ids: number[];
  /** Called by `close()` after the client's own system closed (e.g. to close the transport). */
  onClose?: () => Promise<void>;
}

/** A connection to a cluster's engines (IPython Parallel's `Client`). */
export class Client {
  /** The actor system the client speaks through. */
  readonly system: ActorSystem;
  readonly #ids: number[];
  readonly #dead = new Map<number, EngineDiedError>();
  readonly #onClose?: () => Promise<void>;
  #closed = false;

  constructor(options: ClientOptions) {
    this.system = options.system;
    this.#ids = [...options.ids].sort((a, b) => a - b);
    this.#onClose = options.onClose;
  }

  /** The ids of the engines, sorted. */
  get ids(): number[] {
    return [...this.#ids];
  }

  /** The cluster's namespace (stream key prefix). */
  get namespace(): string {
    return this.system.namespace;
  }

  /** The transport the cluster runs on. */
  get transport(): Transport {
    return this.system.transport;
  }

  /**
   * A view on some engines: all of them by default (`rc[:]`), one id, or a list of ids, whose
   * order is the order results come back in.
   */
  view(targets?: number | readonly number[]): DirectView {
    return new DirectView(this, this.resolveTargets(targets));
  }

  /** @internal Checks and normalises a targets argument. */
  resolveTargets(targets?: number | readonly number[]): number[] {
    const list = targets === undefined ? this.#ids : typeof targets === "number" ? [targets] : [
      ...targets,
    ];
    for (const id of list) {
      if (!this.#ids.includes(id)) {
        throw new RangeError(`Cannot target engine ${id}: no such engine (engines: ${this.#ids})`);
      }
    }
    if (new Set(list).size !== list.length) {
      throw new RangeError(`Cannot target engines ${list}: an engine is listed twice`);
    }
    if (list.length === 0) throw new RangeError("Cannot make a view on no engines");
    return list;
  }

  /** The error of engine `id` if it is known to be dead. */
  deadEngine(id: number): EngineDiedError | undefined {
    return this.#dead.get(id);
  }

  /** Marks engines dead: every pending and later call on them fails with `EngineDiedError`. */
  engineDied(id: number, reason: string): void {
    if (this.#dead.has(id)) return;
    const error = new EngineDiedError(id, reason);
    this.#dead.set(id, error);
    this.system.failAsksTo(`engine.${id}`, error);
  }

  /** Closes the client's connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.system.close();
    await this.#onClose?.();
  }
}
