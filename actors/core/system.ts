/**
 * The actor runtime of one event loop: it spawns actors on a transport, reads all their inboxes
 * with one blocking reader, hands each actor its messages one at a time, acknowledges each after
 * it is handled, and moves entries that do not verify to the dead-letter stream.
 *
 * Why this file is over 500 lines: the read loop, the mailboxes, the asks and the local delivery
 * share one set of private state (the entries in flight, the open asks, the running actors), and
 * each reads and changes the others' part. The pieces that stand alone are split off
 * (`system_types.ts`, `_acks.ts`, `_dead_letters.ts`, `_replay_guard.ts`); splitting the rest
 * means turning that state into collaborators first (an inbox reader and a mailbox, as
 * the layout review sketches), which is a change of its own, not a move.
 *
 * @module
 */
import {
  InvalidMessageError,
  RemoteError,
  type RemoteErrorData,
  SerializationError,
  TimeoutError,
  TransportClosedError,
  TransportDataLostError,
} from "../../errors.ts";
import { checkValue, cloneValue, encodeValue } from "../../transport/codec.ts";
import {
  checkKey,
  type ClusterKey,
  type Envelope,
  namespaceKey,
  openEnvelope,
  sealEnvelope,
} from "../../transport/envelope.ts";
import type { StreamEntry, Transport } from "../../transport/types.ts";
import type {
  ActorContext,
  ActorDefinition,
  ActorRuntime,
  AskOptions,
  Handler,
  SendOptions,
} from "./actor.ts";
import { DEFAULT_REPLAY_WINDOW_MS, RecentMessages, replayReason } from "./_replay_guard.ts";
import { Acks, tagOf } from "./_acks.ts";
import { NamespaceLease } from "./_lease.ts";
import {
  DEAD_LETTER_BOUNDS,
  type DeadLetterBounds,
  deadLetterRecord,
  kindOf,
} from "./_dead_letters.ts";
import {
  type ActorSystemOptions,
  type ActorSystemStats,
  type DataLostDetail,
  type DeadLetterDetail,
  type DeadLetterReason,
  GROUP,
  type Reply,
} from "./system_types.ts";

/** An actor as its system runs it. */
interface Running {
  address: string;
  stream: string;
  definition: ActorDefinition;
  queue: StreamEntryWithEnvelope[];
  busy: boolean;
}

interface StreamEntryWithEnvelope {
  entry: StreamEntry | null;
  envelope: Envelope;
  /** Called once the message was handled and answered, or dropped (see `handleEntry`). */
  done?: () => void;
  /** Called once its handler returned, before its answer is written (or when it is dropped). */
  handled?: () => void;
}

interface Waiting {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  to: string;
  cleanup: () => void;
  /**
   * Whether the message asked was written (or handed over here, its answer to come through the
   * transport): a loss of the transport's data may have taken it or its answer. A message still
   * being written goes to the server as it is now.
   */
  written: boolean;
}

/**
 * Runs actors on one event loop. Dispatches `"deadletter"` events (detail
 * {@linkcode DeadLetterDetail}) and `"error"` events (an `ErrorEvent`) for failures no caller
 * awaits; it never prints.
 *
 * When the transport finds that its server lost its data (a Redis restarted without
 * persistence), every answer awaited to a message already written fails with
 * {@linkcode TransportDataLostError} (a message still being written goes to the server as it is
 * now), each actor's `dataLost` hook runs, and the system dispatches `"datalost"` (detail
 * {@linkcode DataLostDetail}).
 */
export class ActorSystem extends EventTarget implements ActorRuntime {
  /** This system's consumer name. */
  readonly id: string;
  /** The transport the inboxes live on. */
  readonly transport: Transport;
  /** Prefix of every stream key. */
  readonly namespace: string;
  /** The address answers to this system's `ask` calls go to. */
  readonly replyAddress: string;
  readonly #key: ClusterKey;
  readonly #blockMs: number;
  readonly #maxLen: number;
  readonly #maxMessageBytes: number;
  readonly #deadLetterBounds: DeadLetterBounds;
  readonly #localDelivery: boolean;
  readonly #maxDeliveries: number;
  readonly #claimIdleMs: number;
  readonly #retainAckedMs: number;
  /** Streams with entries acknowledged here, and when the last was; trimmed until all are gone. */
  readonly #acked = new Map<string, number>();
  /** When the reader next trims acknowledged entries (ms since the epoch). */
  #nextTrim = 0;
  #trimming: Promise<void> | undefined;
  #trimmed = 0;
  /** When the reader next claims other consumers' stale entries (ms since the epoch). */
  #nextClaim = 0;
  readonly #actors = new Map<string, Running>();
  readonly #keepLimit: number;
  /** Keys of the values stored by `store` and sends with `keep`, oldest first. */
  #kept: string[] = [];
  /** Contents sent by actors that share contents, encoded. */
  readonly #encoded = new WeakMap<object, Uint8Array>();
  readonly #byStream = new Map<string, Running>();
  readonly #asks = new Map<string, Waiting>();
  /** The first entry of each message taken from the inboxes: a second entry of one is dropped. */
  readonly #recent: RecentMessages;
  readonly #replayWindowMs: number;
  /** Entries to acknowledge at the end of this microtask, by stream. */
  readonly #acks: Acks;
  readonly #wakeStream: string;
  readonly #replyStream: string;
  #loop: Promise<void> | undefined;
  /** The streams the reader reads; rebuilt when an actor starts or stops. */
  #streams: string[] | undefined;
  #closed = false;
  #handling = 0;
  /** Ends the waits of answers being tried again, at close. */
  readonly #pauses = new Set<() => void>();
  #idle: (() => void)[] = [];
  /** Entries queued or being handled, so that one delivered again is not handled twice. */
  readonly #inFlight = new Set<string>();
  /**
   * For each read (or claim) on its way, the entries acknowledged since it was issued: it may
   * bring them back as pending (a re-read of pending entries served before the ack), and they
   * are done.
   */
  readonly #ackedSinceRead = new Set<Set<string>>();
  /** The sweep for stale entries under way, beside the reads. */
  #claiming: Promise<void> | undefined;
  #sent = 0;
  #received = 0;
  readonly #offDataLost: () => void;
  readonly #lease: NamespaceLease;
  readonly #deadLetters: Record<DeadLetterReason, number> = {
    "no-payload": 0,
    oversized: 0,
    truncated: 0,
    version: 0,
    signature: 0,
    malformed: 0,
    "unknown-type": 0,
    poison: 0,
    replay: 0,
  };

  /** Makes a system; its reader starts with the first actor spawned or the first `ask`. */
  constructor(options: ActorSystemOptions) {
    super();
    this.transport = options.transport;
    this.namespace = options.namespace;
    checkKey(options.key, "Cannot make actor system");
    this.#key = namespaceKey(options.key, options.namespace);
    this.id = options.id ?? `sys-${crypto.randomUUID().slice(0, 8)}`;
    this.#blockMs = options.blockMs ?? 1000;
    this.#maxLen = options.maxLen ?? 10_000;
    this.#maxMessageBytes = options.maxMessageBytes ?? 512 * 1024 * 1024;
    checkMaxMessageBytes(options.maxMessageBytes, "Cannot make actor system");
    this.#deadLetterBounds = { ...DEAD_LETTER_BOUNDS, ...options.deadLetters };
    this.#localDelivery = options.localDelivery ?? false;
    this.#keepLimit = options.keepLimit ?? 1000;
    if (!(this.#keepLimit >= 1)) {
      throw new RangeError(
        `Cannot make actor system: keepLimit must be at least 1, got ${this.#keepLimit}`,
      );
    }
    this.#maxDeliveries = options.maxDeliveries ?? 3;
    this.#claimIdleMs = options.claimIdleMs ?? 30_000;
    this.#retainAckedMs = options.retainAckedMs ?? 10_000;
    this.#replayWindowMs = options.replayWindowMs ?? DEFAULT_REPLAY_WINDOW_MS;
    if (!(this.#replayWindowMs > 0)) {
      throw new RangeError(
        `Cannot make actor system: replayWindowMs must be positive, got ${this.#replayWindowMs}`,
      );
    }
    this.#recent = new RecentMessages(this.#replayWindowMs);
    if (!(this.#maxDeliveries >= 1)) {
      throw new RangeError(
        `Cannot make actor system: maxDeliveries must be at least 1, got ${this.#maxDeliveries}`,
      );
    }
    if (!(this.#retainAckedMs >= 0)) {
      throw new RangeError(
        `Cannot make actor system: retainAckedMs must be at least 0, got ${this.#retainAckedMs}`,
      );
    }
    if (!(this.#claimIdleMs >= 0)) {
      throw new RangeError(
        `Cannot make actor system: claimIdleMs must be at least 0, got ${this.#claimIdleMs}`,
      );
    }
    this.replyAddress = `_reply.${this.id}`;
    this.#replyStream = this.inboxOf(this.replyAddress);
    this.#wakeStream = `${this.namespace}:wake:${this.id}`;
    this.#offDataLost = this.transport.onDataLost((reason) => this.#dataLost(reason));
    this.#lease = new NamespaceLease(this.transport, this.namespace);
    this.#acks = new Acks(this.transport, {
      closed: () => this.#closed,
      acknowledged: (stream, tags) => {
        for (const acked of this.#ackedSinceRead) for (const tag of tags) acked.add(tag);
        if (Number.isFinite(this.#retainAckedMs)) this.#acked.set(stream, Date.now());
      },
      settled: (tags) => {
        for (const tag of tags) this.#inFlight.delete(tag);
      },
      failed: (error) => this.#emitError(error),
    });
  }

  /**
   * Marks the wait for the answer to message `id` as one whose message is in the transport, when
   * that message went out inside another (a `DirectView` task in its host's `dispatch` message):
   * a server that loses its data then fails the wait with `TransportDataLostError`.
   */
  written(id: string): void {
    this.#written(id);
  }

  /** Marks the wait for the answer to message `id`, if any, as one whose message was written. */
  #written(id: string): void {
    const waiting = this.#asks.get(id);
    if (waiting) waiting.written = true;
  }

  /**
   * The transport's server lost what it held: the messages written for awaited answers, or their
   * answers, may be gone. Fails those waits (messages still being written go to the server as it
   * is now, and are answered; messages handed over here were never there), tells the actors, and
   * says so.
   */
  #dataLost(reason: string): void {
    if (this.#closed) return;
    for (const [id, waiting] of [...this.#asks]) {
      // An actor of this system answers without the transport: it is told of the loss below.
      if (!waiting.written || this.deliversLocally(waiting.to)) continue;
      const error = new TransportDataLostError(engineIdOf(waiting.to), reason, waiting.to);
      this.#settle(id, { error });
    }
    for (const running of [...this.#actors.values()]) {
      try {
        running.definition.dataLost?.(reason);
      } catch (error) {
        this.#emitError(error);
      }
    }
    this.dispatchEvent(new CustomEvent<DataLostDetail>("datalost", { detail: { reason } }));
  }

  /** The stream key of the inbox of `address`. */
  inboxOf(address: string): string {
    return `${this.namespace}:inbox:${address}`;
  }

  /** The stream key of the dead-letter stream. */
  get deadLetterStream(): string {
    return `${this.namespace}:dead`;
  }

  /** Starts an actor under `address`; its inbox is read from the next read on. */
  spawn(address: string, definition: ActorDefinition): void {
    if (this.#closed) throw new TransportClosedError("Cannot spawn actor: the system is closed");
    if (this.#actors.has(address)) {
      throw new RangeError(`Cannot spawn actor "${address}": the address is taken`);
    }
    const running: Running = {
      address,
      stream: this.inboxOf(address),
      definition,
      queue: [],
      busy: false,
    };
    this.#actors.set(address, running);
    this.#byStream.set(running.stream, running);
    this.#streams = undefined;
    this.#nextClaim = 0;
    this.#start();
    this.#wake();
  }

  /** Stops the actor at `address`: its inbox is no longer read; its stopped hook runs. */
  async stopActor(address: string): Promise<void> {
    const running = this.#actors.get(address);
    if (!running) return;
    this.#actors.delete(address);
    this.#byStream.delete(running.stream);
    this.#streams = undefined;
    for (const item of running.queue.splice(0)) {
      item.handled?.();
      item.done?.();
    }
    await running.definition.stopped?.();
  }

  /**
   * How many ordinary messages the actor at `address` has been handed and not yet started (the
   * one it is handling is not counted); 0 for an address no actor of this system holds.
   */
  queueLength(address: string): number {
    return this.#actors.get(address)?.queue.length ?? 0;
  }

  /**
   * How many envelopes this system wrote (`send`, `sendMany`, `ask`), how many its reader
   * accepted, and how many entries it dead-lettered, in total and by reason.
   */
  get stats(): ActorSystemStats {
    const deadLetters = { ...this.#deadLetters };
    const deadLettered = Object.values(deadLetters).reduce((a, b) => a + b, 0);
    return {
      sent: this.#sent,
      received: this.#received,
      deadLettered,
      deadLetters,
      inFlight: this.#inFlight.size,
      waiting: this.#asks.size,
      trimmed: this.#trimmed,
    };
  }

  /** The addresses of the actors running here. */
  get addresses(): string[] {
    return [...this.#actors.keys()];
  }

  /** Signs and writes one message to the inbox of `to`. Returns its id. */
  async send(
    to: string,
    type: string,
    content?: unknown,
    options: SendOptions & { from?: string } = {},
  ): Promise<string> {
    const envelope = this.#envelope(to, type, content, options);
    let bytes: Uint8Array | undefined;
    if (options.keep) this.#keep(options.keep, bytes = sealEnvelope(envelope, this.#key));
    if (this.#localDelivery && to === this.replyAddress) {
      // An answer to an ask of this system (a ping between two engines of a host, say). One from
      // an actor that shares contents (a broadcast node's parts) is made of what it was handed,
      // copies already, which it neither keeps nor changes: it is handed over.
      const shared = this.#actors.get(options.from ?? "")?.definition.sharesContent === true;
      const answer = {
        ...envelope,
        content: shared ? envelope.content : cloneValue(envelope.content),
      };
      queueMicrotask(() => this.#settleReply(answer));
      this.#written(envelope.id);
      return envelope.id;
    }
    if (this.#isLocal(envelope)) {
      if (options.handOver) checkValue(envelope.content);
      this.#deliverLocally(envelope, options.handOver === true || this.#shares(envelope));
      this.#written(envelope.id);
      return envelope.id;
    }
    bytes ??= sealEnvelope(envelope, this.#key);
    await this.transport.append(this.inboxOf(to), bytes, { maxLen: this.#maxLen });
    this.#sent++;
    this.#written(envelope.id);
    return envelope.id;
  }

  /**
   * Stores `bytes` under `keep.key`. Not awaited: on one connection (or port) the value is written
   * before whatever the caller appends next, so it is there once that is read.
   */
  #keep(keep: { key: string; ttlMs: number }, bytes: Uint8Array): void {
    this.transport.putBlob(keep.key, bytes, keep.ttlMs).catch((error) => this.#emitError(error));
    this.#counted(keep.key);
  }

  /**
   * Counts a value stored with a time to live. Past `keepLimit` of them, the oldest tenth is
   * deleted at once, as IPython Parallel's hub database culls its oldest records.
   */
  #counted(key: string): void {
    this.#kept.push(key);
    if (this.#kept.length <= this.#keepLimit) return;
    const culled = this.#kept.splice(0, Math.max(1, Math.ceil(this.#keepLimit / 10)));
    this.transport.deleteBlobs(culled).catch((error) => {
      if (!this.#closed) this.#emitError(error);
    });
  }

  /**
   * Signs `content` as a message of `type` with id `id` and stores it as a value under `key` for
   * `ttlMs` ms (not in a stream). {@linkcode load} reads it back, verified.
   */
  async store(
    key: string,
    id: string,
    type: string,
    content: unknown,
    ttlMs: number,
  ): Promise<void> {
    const envelope = this.#envelope("", type, content, { id });
    await this.transport.putBlob(key, sealEnvelope(envelope, this.#key), ttlMs);
    this.#counted(key);
  }

  /**
   * The message stored under `key` (by {@linkcode store}, or by a send with `keep`), verified with
   * the cluster key; `null` when there is none (never stored, or expired). Throws
   * {@linkcode InvalidMessageError} when the value is not a message signed with the cluster key.
   */
  async load(key: string): Promise<Envelope | null> {
    const bytes = await this.transport.getBlob(key);
    if (bytes === null) return null;
    try {
      return openEnvelope(bytes, this.#key, this.#maxMessageBytes);
    } catch (cause) {
      throw new InvalidMessageError(key, "value", (cause as Error).message, { cause });
    }
  }

  /**
   * Hands each of `envelopes` to the actor of this system it is addressed to, as if it had come
   * through its inbox but without the transport: each gets its own copy of the content, and its
   * answer goes to its `replyTo`. Throws `SerializationError` for a content that cannot be sent,
   * before delivering anything. Returns
   * the envelopes addressed to no actor here, which are not delivered.
   */
  deliver(envelopes: readonly Envelope[]): Envelope[] {
    const missing: Envelope[] = [];
    const copies: Envelope[] = [];
    for (const envelope of envelopes) {
      if (this.#actors.has(envelope.to)) {
        copies.push({ ...envelope, content: cloneValue(envelope.content) });
      } else missing.push(envelope);
    }
    for (const copy of copies) this.#deliverLocally(copy, true);
    return missing;
  }

  #isLocal(envelope: Envelope): boolean {
    return this.deliversLocally(envelope.to);
  }

  /**
   * Whether a message to `address` is handed over here without the transport (local delivery
   * is on, and the actor runs here), so that no loss of the transport's data can touch it.
   */
  deliversLocally(address: string): boolean {
    return this.#localDelivery && (this.#actors.has(address) || address === this.replyAddress);
  }

  /** Whether `envelope` goes between two actors here that share contents. */
  #shares(envelope: Envelope): boolean {
    return this.#actors.get(envelope.to)?.definition.sharesContent === true &&
      this.#actors.get(envelope.from)?.definition.sharesContent === true;
  }

  /**
   * Hands `envelope` to an actor of this system, with its own copy of the content (made now, with
   * the codec's rules: `SerializationError` for a content that cannot be sent), or with the
   * content itself when `owned` (a copy already, or between actors that share contents).
   */
  #deliverLocally(envelope: Envelope, owned: boolean): void {
    const running = this.#actors.get(envelope.to)!;
    const delivered = owned ? envelope : { ...envelope, content: cloneValue(envelope.content) };
    queueMicrotask(() => {
      if (this.#actors.get(envelope.to) !== running) return;
      this.#route(running, delivered, null);
    });
  }

  /**
   * Signs and writes several messages in one round trip. Returns their ids. With `uncapped`, the
   * streams are not trimmed to `maxLen` (a task stream, whose unread entries must all stay; its
   * writer trims what is done).
   */
  async sendMany(
    messages: readonly {
      to: string;
      type: string;
      content?: unknown;
      options?: SendOptions & { from?: string };
    }[],
    { uncapped = false }: { uncapped?: boolean } = {},
  ): Promise<string[]> {
    const envelopes = messages.map((m) => this.#envelope(m.to, m.type, m.content, m.options ?? {}));
    // The same content sent to many actors (a broadcast's task) is encoded once: in this call,
    // or, when it comes from actors that never change what they send, in any call.
    const encoded = new Map<unknown, Uint8Array>();
    const contentBytes = (content: unknown, from: string) => {
      if (typeof content !== "object" || content === null) return encodeValue(content);
      const cache = this.#actors.get(from)?.definition.sharesContent ? this.#encoded : encoded;
      let bytes = cache.get(content);
      if (!bytes) cache.set(content, bytes = encodeValue(content));
      return bytes;
    };
    const sealed = new Map<Envelope, Uint8Array>();
    const seal = (e: Envelope) => {
      let bytes = sealed.get(e);
      if (!bytes) {
        sealed.set(e, bytes = sealEnvelope(e, this.#key, contentBytes(e.content, e.from)));
      }
      return bytes;
    };
    envelopes.forEach((e, i) => {
      const keep = messages[i].options?.keep;
      if (keep) this.#keep(keep, seal(e));
    });
    const entries = [];
    // Every local copy is made before any is delivered: a content that cannot be sent fails the
    // whole call.
    const local: Envelope[] = [];
    for (const e of envelopes) {
      if (!this.#isLocal(e)) entries.push({ stream: this.inboxOf(e.to), data: seal(e) });
      else local.push(this.#shares(e) ? e : { ...e, content: cloneValue(e.content) });
    }
    for (const e of local) this.#deliverLocally(e, true);
    if (entries.length > 0) {
      await this.transport.appendMany(entries, uncapped ? {} : { maxLen: this.#maxLen });
      this.#sent += entries.length;
    }
    for (const e of envelopes) this.#written(e.id);
    return envelopes.map((e) => e.id);
  }

  #envelope(
    to: string,
    type: string,
    content: unknown,
    options: SendOptions & { from?: string },
  ): Envelope {
    const envelope: Envelope = {
      id: options.id ?? crypto.randomUUID(),
      type,
      from: options.from ?? this.replyAddress,
      to,
      sent: Date.now(),
      content,
    };
    if (options.parent) envelope.parent = options.parent;
    if (options.replyTo) envelope.replyTo = options.replyTo;
    if (options.deadline) envelope.deadline = options.deadline;
    return envelope;
  }

  /**
   * Sends a message that expects an answer and waits for it. Rejects with {@linkcode TimeoutError}
   * when the deadline passes, with {@linkcode RemoteError} when the handler threw.
   */
  ask<T = unknown>(
    to: string,
    type: string,
    content?: unknown,
    options: AskOptions & { from?: string } = {},
  ): Promise<T> {
    const timeout = options.timeout ?? 30_000;
    const envelope = this.#envelope(to, type, content, {
      from: options.from,
      replyTo: this.replyAddress,
      deadline: Number.isFinite(timeout) ? Date.now() + timeout : undefined,
    });
    this.#start();
    if (this.#isLocal(envelope)) {
      let copy: Envelope;
      try {
        copy = { ...envelope, content: cloneValue(envelope.content) };
      } catch (error) {
        return Promise.reject(error);
      }
      const result = this.expectReply<T>(envelope.id, to, timeout, options.signal, type);
      this.#deliverLocally(copy, true);
      this.#written(envelope.id);
      return result;
    }
    let bytes: Uint8Array;
    try {
      bytes = sealEnvelope(envelope, this.#key);
    } catch (error) {
      return Promise.reject(error);
    }
    const result = this.expectReply<T>(envelope.id, to, timeout, options.signal, type);
    this.transport.append(this.inboxOf(to), bytes, { maxLen: this.#maxLen }).then(
      () => {
        this.#sent++;
        this.#written(envelope.id);
      },
      (error) => this.#settle(envelope.id, { error }),
    );
    return result;
  }

  /**
   * Waits for the answer to message `id` (sent elsewhere with `replyTo` = this system's
   * {@linkcode replyAddress}).
   */
  expectReply<T>(
    id: string,
    to: string,
    timeout: number,
    signal?: AbortSignal,
    what = "message",
  ): Promise<T> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.#start();
    return new Promise<T>((resolve, reject) => {
      const timer = Number.isFinite(timeout)
        ? setTimeout(() => {
          this.#settle(id, {
            error: new TimeoutError(
              `Cannot get answer from "${to}": no answer to "${what}" within ${timeout} ms`,
              timeout,
            ),
          });
        }, timeout)
        : undefined;
      const onAbort = () => this.#settle(id, { error: signal!.reason });
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#asks.set(id, {
        resolve: resolve as (v: unknown) => void,
        reject,
        to,
        cleanup: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
        written: false,
      });
    });
  }

  /** Fails the wait on the answer to message `id` with `error`. */
  failReply(id: string, error: Error): void {
    this.#settle(id, { error });
  }

  /** Fails every wait on an answer from `to` with `error` (its actor is known to be gone). */
  failAsksTo(to: string, error: Error): void {
    this.failAsksWhere((address) => address === to, error);
  }

  /** Fails with `error` every answer awaited from an address `which` accepts. */
  failAsksWhere(which: (to: string) => boolean, error: Error): void {
    for (const [id, waiting] of this.#asks) if (which(waiting.to)) this.#settle(id, { error });
  }

  #settle(id: string, outcome: { value: unknown } | { error: unknown }): void {
    const waiting = this.#asks.get(id);
    if (!waiting) return;
    this.#asks.delete(id);
    waiting.cleanup();
    if ("error" in outcome) waiting.reject(outcome.error as Error);
    else waiting.resolve(outcome.value);
  }

  #start(): void {
    this.#loop ??= this.#readLoop();
  }

  #wake(): void {
    if (this.#loop) this.transport.append(this.#wakeStream, new Uint8Array(1)).catch(() => {});
  }

  async #readLoop(): Promise<void> {
    let from: ">" | "0" = "0";
    let failures = 0;
    while (!this.#closed) {
      const streams = this.#streams ??= [
        this.#replyStream,
        this.#wakeStream,
        ...this.#byStream.keys(),
      ];
      let entries: StreamEntry[];
      const acked = new Set<string>();
      this.#ackedSinceRead.add(acked);
      try {
        entries = await this.transport.read(GROUP, this.id, streams, {
          count: 256,
          blockMs: this.#blockMs,
          from,
        });
        failures = 0;
      } catch (error) {
        this.#ackedSinceRead.delete(acked);
        if (this.#closed) break;
        this.#emitError(error);
        await delay(Math.min(2000, 50 * 2 ** failures++));
        continue;
      }
      this.#ackedSinceRead.delete(acked);
      // Read this consumer's pending entries once: reading "0" again returns those still being
      // handled, at once and forever.
      from = ">";
      for (const entry of entries) if (!acked.has(tagOf(entry))) this.#accept(entry);
      if (!this.#closed) this.#lease.tick();
      // The sweep goes on beside the next reads (it is one call on the transport's command
      // connection, the reads wait on its blocking one): no message waits for it.
      if (Date.now() >= this.#nextClaim && !this.#closed) {
        this.#claiming ??= this.#claimStale().finally(() => (this.#claiming = undefined));
      }
      if (Date.now() >= this.#nextTrim && this.#acked.size > 0 && !this.#closed) {
        this.#trimming ??= this.#trimAcknowledged().finally(() => (this.#trimming = undefined));
      }
    }
  }

  /**
   * Deletes the acknowledged entries older than `retainAckedMs` from the streams where entries
   * were acknowledged, until a trim has come after the last of them aged.
   */
  async #trimAcknowledged(): Promise<void> {
    const retain = this.#retainAckedMs;
    this.#nextTrim = Date.now() + Math.min(1000, Math.max(100, retain / 2));
    for (const [stream, lastAck] of [...this.#acked]) {
      if (this.#closed) return;
      const started = Date.now();
      try {
        this.#trimmed += await this.transport.trimAcknowledged(stream, retain);
        // Everything acknowledged by then is older than `retain` now: trimmed.
        if (started - lastAck >= retain && this.#acked.get(stream) === lastAck) {
          this.#acked.delete(stream);
        }
      } catch (error) {
        if (this.#closed) return;
        this.#emitError(error);
      }
    }
  }

  /**
   * Takes over the entries of this system's inboxes that another consumer (a host that died)
   * left pending for `claimIdleMs`. An inbox with an entry queued or running here is skipped:
   * claiming would count one more delivery of an entry that is being handled.
   */
  async #claimStale(): Promise<void> {
    this.#nextClaim = Date.now() + Math.max(10, this.#claimIdleMs / 2);
    const busy = new Set([...this.#inFlight].map((tag) => tag.slice(0, tag.lastIndexOf("\n"))));
    const streams = [...this.#byStream.keys()].filter((stream) => !busy.has(stream));
    if (streams.length === 0) return;
    const acked = new Set<string>();
    this.#ackedSinceRead.add(acked);
    try {
      const entries = await this.transport.claim(streams, GROUP, this.id, this.#claimIdleMs);
      for (const entry of entries) {
        // An inbox that got an entry queued here meanwhile is left for the next sweep.
        if (!acked.has(tagOf(entry)) && !this.#closed) this.#accept(entry);
      }
    } catch (error) {
      if (this.#closed) return;
      this.#emitError(error);
    } finally {
      this.#ackedSinceRead.delete(acked);
    }
  }

  /**
   * The message in `data` (an entry's payload), verified with the cluster key. Throws
   * `InvalidMessageError`-worthy errors (`RangeError`, `TypeError`) when it does not verify.
   */
  verify(data: Uint8Array): Envelope {
    return openEnvelope(data, this.#key, this.#maxMessageBytes);
  }

  /**
   * Why `envelope`, read in `entry`, is refused as replayed or redirected: it came from another
   * stream than its recipient's inbox, or was appended longer than `replayWindowMs` after it was
   * signed. `undefined` when it is neither.
   */
  replayOf(entry: StreamEntry, envelope: Envelope): string | undefined {
    return replayReason(entry, envelope, this.inboxOf(envelope.to), this.#replayWindowMs);
  }

  /**
   * Handles on the actor at `address` a message that the caller read from a stream outside this
   * system's inboxes (a shared task stream, read through a group of its own): queued behind the
   * actor's other messages, as if it had come to its inbox. Resolves `true` once it was handled
   * and answered; `false` at once when it was not handled: it does not verify (it is then
   * dead-lettered), its type has no handler (its asker gets the `TypeError` answer), or no actor
   * runs at `address`. The caller acknowledges the entry. `handled` is called as soon as the
   * handler returned, before the answer is written (or when the message is not handled).
   */
  handleEntry(entry: StreamEntry, address: string, handled?: () => void): Promise<boolean> {
    let envelope: Envelope;
    try {
      if (entry.data === null) throw new RangeError("entry has no payload field");
      envelope = this.verify(entry.data);
    } catch (cause) {
      const reason = entry.data === null ? "no-payload" : kindOf((cause as Error).message);
      this.#deadLetter(entry, reason, (cause as Error).message, cause);
      return Promise.resolve(false);
    }
    const replayed = this.replayOf(entry, envelope);
    if (replayed !== undefined) {
      this.#deadLetter(entry, "replay", replayed);
      return Promise.resolve(false);
    }
    this.#received++;
    const tag = tagOf(entry);
    if (this.#recent.first(entry, envelope.id, tag) !== tag) return Promise.resolve(false);
    envelope = { ...envelope, to: address };
    const running = this.#actors.get(address);
    if (!running) return Promise.resolve(false);
    if (!Object.hasOwn(running.definition.handlers, envelope.type)) {
      this.#route(running, envelope, null);
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      running.queue.push({ entry: null, envelope, done: () => resolve(true), handled });
      this.#drain(running);
    });
  }

  /** Settles the ask that `envelope` answers. */
  #settleReply(envelope: Envelope): void {
    const reply = envelope.content as Reply;
    if (!envelope.parent) return;
    if (reply?.ok) this.#settle(envelope.parent, { value: reply.value });
    else {
      const data = reply?.error ?? { name: "Error", message: "malformed reply" };
      this.#settle(envelope.parent, {
        error: new RemoteError(engineIdOf(envelope.from), data, envelope.from),
      });
    }
  }

  #accept(entry: StreamEntry): void {
    if (entry.stream === this.#wakeStream) {
      this.#acks.ack(entry);
      return;
    }
    let envelope: Envelope;
    try {
      if (entry.data === null) throw new RangeError("entry has no payload field");
      envelope = openEnvelope(entry.data, this.#key, this.#maxMessageBytes);
    } catch (cause) {
      const reason = entry.data === null ? "no-payload" : kindOf((cause as Error).message);
      this.#deadLetter(entry, reason, (cause as Error).message, cause);
      return;
    }
    const replayed = this.replayOf(entry, envelope);
    if (replayed !== undefined) {
      this.#deadLetter(entry, "replay", replayed);
      return;
    }
    this.#received++;
    if (entry.stream === this.#replyStream) {
      this.#acks.ack(entry);
      this.#settleReply(envelope);
      return;
    }
    const tag = tagOf(entry);
    if (this.#inFlight.has(tag)) return; // delivered again while still queued or being handled
    this.#inFlight.add(tag);
    if (this.#recent.first(entry, envelope.id, tag) !== tag) {
      // The same message in a second entry: a write the transport sent again after losing the
      // server's reply to it (the server had applied it), or a copy appended within the replay
      // window. It was handled, or is being handled.
      this.#acks.ack(entry);
      return;
    }
    const running = this.#byStream.get(entry.stream);
    if (!running) {
      this.#acks.ack(entry); // its actor stopped after the read
      return;
    }
    if (entry.deliveries > this.#maxDeliveries) {
      // Each earlier delivery ended with its host gone before the ack: handling it again would
      // take this host down too.
      const times = entry.deliveries - 1;
      this.#deadLetter(entry, "poison", `delivered ${times} times without being handled`);
      this.#replyTo(envelope, running.address, {
        ok: false,
        error: {
          name: "PoisonMessageError",
          message: `Cannot handle "${envelope.type}" on "${running.address}": ` +
            `delivered ${times} times without being handled`,
        },
      });
      return;
    }
    this.#route(running, envelope, entry);
  }

  /** Hands a message to its actor; `entry` is `null` for a message delivered locally. */
  #route(running: Running, envelope: Envelope, entry: StreamEntry | null): void {
    // Own properties only: a type such as "toString" or "constructor" must not reach the
    // handler an object inherits.
    const controls = running.definition.control;
    const control = controls && Object.hasOwn(controls, envelope.type)
      ? controls[envelope.type]
      : undefined;
    if (control) {
      this.#handle(running, entry, envelope, control);
      return;
    }
    if (!Object.hasOwn(running.definition.handlers, envelope.type)) {
      if (entry) {
        this.#deadLetter(entry, "unknown-type", `unknown message type "${envelope.type}"`);
      }
      this.#replyTo(envelope, running.address, {
        ok: false,
        error: {
          name: "TypeError",
          message: `Actor "${running.address}" has no handler for "${envelope.type}"`,
        },
      });
      return;
    }
    running.queue.push({ entry, envelope });
    this.#drain(running);
  }

  async #drain(running: Running): Promise<void> {
    if (running.busy) return;
    running.busy = true;
    try {
      while (running.queue.length > 0 && this.#actors.get(running.address) === running) {
        const { entry, envelope, done, handled } = running.queue.shift()!;
        const handler = running.definition.handlers[envelope.type];
        // The next message need not wait for this one's answer to be written: only its ack does.
        const { written } = await this.#handle(running, entry, envelope, handler);
        handled?.();
        written.then(done, done);
      }
    } finally {
      running.busy = false;
    }
  }

  /**
   * Runs `handler` on `envelope`; resolves once it returned, with `written`: a promise of its
   * answer being written and `entry` acknowledged (wrapped, since a promise returned from an async
   * function would be awaited with it).
   */
  async #handle(
    running: Running,
    entry: StreamEntry | null,
    envelope: Envelope,
    handler: Handler,
  ): Promise<{ written: Promise<void> }> {
    this.#handling++;
    let deferred = false;
    let keep: { key: string; ttlMs: number } | undefined;
    const context: ActorContext = {
      self: running.address,
      system: this,
      envelope,
      local: entry === null,
      send: (to, type, content, options) =>
        this.send(to, type, content, { ...options, from: running.address }),
      ask: (to, type, content, options) =>
        this.ask(to, type, content, { ...options, from: running.address }),
      deferReply: () => {
        deferred = true;
        return (result) =>
          this.#replyTo(
            envelope,
            running.address,
            "error" in result
              ? { ok: false, error: errorData(result.error) }
              : { ok: true, value: result.value },
            keep,
          );
      },
      keepReply: (key, ttlMs) => {
        keep = { key, ttlMs };
      },
    };
    let reply: Reply;
    try {
      reply = { ok: true, value: await handler(envelope.content as never, context) };
    } catch (error) {
      reply = { ok: false, error: errorData(error) };
    }
    const written = deferred
      ? Promise.resolve()
      : this.#replyTo(envelope, running.address, reply, keep);
    return {
      written: written.finally(() => {
        this.#acks.ack(entry);
        if (--this.#handling === 0) { for (const resolve of this.#idle.splice(0)) resolve(); }
      }),
    };
  }

  /**
   * Writes the answer to `envelope`. An answer the transport cannot write now (the server away for
   * longer than its command timeout, loading its data, out of memory) is tried again, less and
   * less often, until it is written, the asker's deadline passes or the system closes: the asker
   * waits for nothing else, and the entry is acknowledged only after this returns.
   */
  async #replyTo(
    envelope: Envelope,
    from: string,
    reply: Reply,
    keep?: { key: string; ttlMs: number },
  ): Promise<void> {
    if (!envelope.replyTo) return;
    let content = reply;
    for (let attempt = 0;; attempt++) {
      try {
        await this.send(envelope.replyTo, "reply", content, { parent: envelope.id, from, keep });
        return;
      } catch (error) {
        if (error instanceof SerializationError && content === reply) {
          content = { ok: false, error: errorData(error) };
          continue;
        }
        const late = envelope.deadline !== undefined && Date.now() >= envelope.deadline;
        if (attempt === 0 || this.#closed || late) this.#emitError(error);
        if (this.#closed || late) return;
        await this.#pause(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  /** Resolves after `ms`, or as soon as the system closes. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#pauses.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#pauses.add(done);
    });
  }

  #deadLetter(
    entry: StreamEntry,
    kind: DeadLetterReason,
    reason: string,
    cause?: unknown,
  ): void {
    this.#deadLetters[kind]++;
    const error = new InvalidMessageError(entry.stream, entry.id, reason, { cause });
    const { maxLen, maxAgeMs, payloadBytes } = this.#deadLetterBounds;
    const letter = deadLetterRecord(entry, reason, payloadBytes);
    this.transport.append(this.deadLetterStream, letter, { maxLen, maxAgeMs })
      .catch((e) => this.#emitError(e))
      .finally(() => this.#acks.ack(entry));
    this.dispatchEvent(
      new CustomEvent<DeadLetterDetail>("deadletter", {
        detail: { error, reason: kind },
      }),
    );
  }

  #emitError(error: unknown): void {
    this.dispatchEvent(
      new ErrorEvent("error", { error, message: String((error as Error)?.message ?? error) }),
    );
  }

  /** Waits until no handler is running (messages already read are handled first). */
  idle(): Promise<void> {
    if (this.#handling === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Stops every actor and the reader, fails every open `ask` with `TransportClosedError` (or
   * `error`, when given), and removes this system's own reply and wake streams. Does not close
   * the transport.
   */
  async close(
    error: Error = new TransportClosedError("Cannot get answer: the actor system closed"),
  ): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#offDataLost();
    for (const done of [...this.#pauses]) done();
    for (const address of [...this.#actors.keys()]) await this.stopActor(address);
    for (const id of [...this.#asks.keys()]) this.#settle(id, { error });
    if (this.#loop) {
      await this.transport.append(this.#wakeStream, new Uint8Array(1)).catch(() => {});
      await this.#loop;
      await this.#trimming;
      await this.#claiming;
      await this.#lease.settled();
    }
    await this.transport.deletePrefix(this.#replyStream).catch(() => {});
    await this.transport.deletePrefix(this.#wakeStream).catch(() => {});
  }
}

/** Turns anything thrown into the data of a `RemoteError`. */
export function errorData(error: unknown): RemoteErrorData {
  if (error instanceof Error) {
    const data: RemoteErrorData = {
      name: error.name,
      message: error.message,
      stack: error.stack ?? "",
    };
    // Own properties a thrown error carries (`code`, `status`, …), when they are plain values.
    for (const [key, value] of Object.entries(error)) {
      if (key === "name" || key === "message" || key === "stack" || key === "cause") continue;
      if (
        value === null || typeof value === "string" || typeof value === "boolean" ||
        (typeof value === "number" && Number.isFinite(value))
      ) {
        (data.properties ??= {})[key] = value;
      }
    }
    return data;
  }
  return { name: "Error", message: `non-Error thrown: ${String(error)}` };
}

function engineIdOf(address: string): number {
  const m = /^engine\.(\d+)$/.exec(address);
  return m ? Number(m[1]) : -1;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Throws a `RangeError` unless `bytes` is absent or a whole number of bytes above 0. */
export function checkMaxMessageBytes(bytes: number | undefined, what: string): void {
  if (bytes === undefined || (Number.isSafeInteger(bytes) && bytes > 0)) return;
  throw new RangeError(
    `${what}: maxMessageBytes must be a whole number of bytes > 0, got ${bytes}`,
  );
}
