/**
 * The embedded transport: streams, consumer groups, pending lists and claims held in the memory
 * of one process, with the semantics of Redis Streams. Workers of the same process reach it
 * through a `MessagePort` ({@linkcode MemoryTransport.openPort} and
 * {@linkcode MemoryTransport.fromPort}).
 *
 * @module
 */
import { TransportClosedError } from "../errors.ts";
import { Broker } from "./_broker.ts";
import { PortTransport, servePort } from "./_port.ts";
import type { AppendOptions, ReadOptions, StreamEntry, Transport } from "./types.ts";

/** The embedded transport: Redis Streams semantics in this process's memory. */
export class MemoryTransport implements Transport {
  readonly url = "memory:";
  #broker: Broker;
  #owner: boolean;
  #closed = false;
  #ports = new Set<MessagePort>();

  /** A transport over new, empty streams; `share` gives another handle on the same streams. */
  constructor(share?: MemoryTransport) {
    this.#broker = share ? share.#broker : new Broker();
    this.#owner = !share;
  }

  #open(): Broker {
    if (this.#closed) throw new TransportClosedError("Cannot use transport: it is closed");
    return this.#broker;
  }

  append(stream: string, data: Uint8Array, options?: AppendOptions): Promise<string> {
    try {
      return Promise.resolve(this.#open().append(stream, data, options));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  appendMany(
    entries: readonly { stream: string; data: Uint8Array }[],
    options?: AppendOptions,
  ): Promise<string[]> {
    try {
      const broker = this.#open();
      return Promise.resolve(entries.map((e) => broker.append(e.stream, e.data, options)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async read(
    group: string,
    consumer: string,
    streams: readonly string[],
    options: ReadOptions = {},
  ): Promise<StreamEntry[]> {
    return copies(await this.#open().read(group, consumer, streams, options));
  }

  async ack(stream: string, group: string, ids: readonly string[]): Promise<void> {
    await this.#open().ack(stream, group, ids);
  }

  async claim(
    streams: string | readonly string[],
    group: string,
    consumer: string,
    minIdleMs: number,
    count = 100,
  ): Promise<StreamEntry[]> {
    return copies(await this.#open().claim(streams, group, consumer, minIdleMs, count));
  }

  async claimFrom(
    stream: string,
    group: string,
    owner: string,
    consumer: string,
    count = 100,
  ): Promise<StreamEntry[]> {
    return copies(await this.#open().claimFrom(stream, group, owner, consumer, count));
  }

  async range(stream: string, start = "-", count = Infinity): Promise<StreamEntry[]> {
    return copies(await this.#open().range(stream, start, count));
  }

  async backlog(stream: string, group: string): Promise<number> {
    return await this.#open().backlog(stream, group);
  }

  async trim(stream: string, maxLen: number): Promise<void> {
    await this.#open().trim(stream, maxLen);
  }

  async trimAcknowledged(stream: string, retainMs: number): Promise<number> {
    return await this.#open().trimAcknowledged(stream, retainMs);
  }

  async putBlob(key: string, data: Uint8Array, ttlMs: number): Promise<void> {
    await this.#open().putBlob(key, data.slice(), ttlMs);
  }

  async putBlobIfAbsent(key: string, data: Uint8Array, ttlMs: number): Promise<boolean> {
    return await this.#open().putBlobIfAbsent(key, data.slice(), ttlMs);
  }

  async getBlob(key: string): Promise<Uint8Array | null> {
    return (await this.#open().getBlob(key))?.slice() ?? null;
  }

  async deleteBlobs(keys: readonly string[]): Promise<void> {
    await this.#open().deleteBlobs(keys);
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.#open().deletePrefix(prefix);
  }

  /** Never calls `listener`: the streams live as long as this process. */
  onDataLost(_listener: (reason: string) => void): () => void {
    return () => {};
  }

  /** Closes this handle; closing the handle that made the streams also ends every blocked read. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const port of this.#ports) port.close();
      this.#ports.clear();
      if (this.#owner) {
        this.#broker.rejectWaiters(
          new TransportClosedError("Cannot read: the transport was closed while waiting"),
        );
      }
    }
    return Promise.resolve();
  }

  /**
   * Returns a port through which a Worker of this process reaches the same streams: transfer it
   * to the worker and call {@linkcode MemoryTransport.fromPort} there.
   */
  openPort(): MessagePort {
    const broker = this.#open();
    const { port1, port2 } = new MessageChannel();
    this.#ports.add(port1);
    servePort(broker, port1);
    return port2;
  }

  /** A transport over the streams of the `MemoryTransport` that opened `port`. */
  static fromPort(port: MessagePort): Transport {
    return new PortTransport(port);
  }
}

/**
 * The entries, each with a copy of its bytes: the stream's stay as they are, whatever the reader
 * does with its own.
 */
function copies(entries: StreamEntry[]): StreamEntry[] {
  return entries.map((e) => e.data === null ? e : { ...e, data: e.data.slice() });
}
