/**
 * The acknowledgements of an actor system's reader: batched per stream, and retried until they
 * go through.
 *
 * @module
 */
import type { StreamEntry, Transport } from "../../transport/types.ts";
import { GROUP } from "./system_types.ts";

/** What identifies an entry among those read and not yet acknowledged. */
export function tagOf(entry: StreamEntry): string {
  return `${entry.stream}\n${entry.id}`;
}

/** What an {@linkcode Acks} tells its system. */
export interface AckHooks {
  /** Whether the system is closed: acknowledgements are then dropped. */
  closed(): boolean;
  /** Entries of `stream` (by tag) were acknowledged. */
  acknowledged(stream: string, tags: readonly string[]): void;
  /** The entries are done with: acknowledged, or dropped at close. */
  settled(tags: readonly string[]): void;
  /** The first failure of an acknowledgement. */
  failed(error: unknown): void;
}

/** The acknowledgements of one system's reader (or of a host's task reader, in its group). */
export class Acks {
  readonly #transport: Transport;
  readonly #hooks: AckHooks;
  readonly #group: string;
  readonly #pending = new Map<string, StreamEntry[]>();

  /** Acknowledges through `transport`, in consumer group `group`, telling `hooks`. */
  constructor(transport: Transport, hooks: AckHooks, group = GROUP) {
    this.#transport = transport;
    this.#hooks = hooks;
    this.#group = group;
  }

  /**
   * Acknowledges `entry`, together with the other entries acknowledged in the same microtask: one
   * `XACK` per stream for a whole read's worth of answers.
   */
  ack(entry: StreamEntry | null): void {
    if (!entry) return;
    if (this.#pending.size === 0) queueMicrotask(() => this.#flush());
    const entries = this.#pending.get(entry.stream);
    if (entries) entries.push(entry);
    else this.#pending.set(entry.stream, [entry]);
  }

  #flush(): void {
    const acks = [...this.#pending];
    this.#pending.clear();
    for (const [stream, entries] of acks) this.#send(stream, entries, 0);
  }

  /**
   * Writes one `XACK`. One that fails (the server away) leaves the entries pending there, and the
   * re-read of pending entries after a reconnect (or a claim) brings them back although they are
   * done: they stay unsettled, so that such a delivery is not handled again, and the ack is
   * tried again, less and less often (up to every 2 s), until it goes through or the system
   * closes. The retry's timer does not keep the process alive.
   */
  #send(stream: string, entries: StreamEntry[], attempt: number): void {
    const tags = entries.map(tagOf);
    const hooks = this.#hooks;
    if (hooks.closed()) return hooks.settled(tags);
    this.#transport.ack(stream, this.#group, entries.map((e) => e.id)).then(() => {
      hooks.acknowledged(stream, tags);
      hooks.settled(tags);
    }, (error) => {
      if (hooks.closed()) return hooks.settled(tags);
      if (attempt === 0) hooks.failed(error);
      const retry = () => this.#send(stream, entries, attempt + 1);
      Deno.unrefTimer(setTimeout(retry, Math.min(2000, 100 * 2 ** attempt)));
    });
  }
}
