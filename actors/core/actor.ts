/**
 * What an actor is: a handler per message type. Spawn one on an `ActorSystem` under an
 * address; its inbox is the stream of that address.
 *
 * @module
 */
import type { Envelope } from "../../transport/envelope.ts";
import type { Transport } from "../../transport/types.ts";

/** What a handler sees besides the message's content. */
export interface ActorContext {
  /** The address of the actor handling the message. */
  readonly self: string;
  /** The system the actor runs on. */
  readonly system: ActorRuntime;
  /** The message being handled. */
  readonly envelope: Envelope;
  /** Whether the message was handed over by this system without the transport. */
  readonly local: boolean;
  /** Sends a message from this actor. Resolves once it is written; returns its id. */
  send(to: string, type: string, content?: unknown, options?: SendOptions): Promise<string>;
  /** Sends a message from this actor and waits for its answer. */
  ask<T = unknown>(to: string, type: string, content?: unknown, options?: AskOptions): Promise<T>;
  /**
   * Takes over answering: the handler's return value is then not sent, and the answer goes out
   * when the returned function is called (with a value, or an error).
   */
  deferReply(): (result: { value: unknown } | { error: unknown }) => Promise<void>;
  /**
   * Also stores the answer, signed as it is sent, under `key` for `ttlMs` ms, so that it can be
   * fetched later with `system.load(key)` (engines keep their results this way).
   */
  keepReply(key: string, ttlMs: number): void;
}

/** Handles one message: its return value (awaited) answers the message when one is expected. */
export type Handler = (content: never, context: ActorContext) => unknown;

/** An actor: its handlers, by message type. */
export interface ActorDefinition {
  /** Handlers of ordinary messages, run one at a time in arrival order. */
  handlers: Record<string, Handler>;
  /**
   * Handlers of control messages (stop, heartbeat, abort), run as soon as the message arrives,
   * never queued behind an ordinary message that is still being handled.
   */
  control?: Record<string, Handler>;
  /**
   * The actor neither changes the contents it is handed nor keeps them past its handlers: a
   * message between two such actors of one system with local delivery is handed over as it is,
   * not copied. Default `false`.
   */
  sharesContent?: boolean;
  /**
   * Called when the transport lost what its server held (Redis restarted without persistence):
   * messages this actor sent and answers it awaits may be gone. An actor that waits for answers
   * other than through `ask` (which fails by itself) fails those waits here. `reason` says what
   * was found.
   */
  dataLost?: (reason: string) => void;
  /** Called once when the actor stops. */
  stopped?: () => void | Promise<void>;
}

/** Identity function that gives an actor definition its type. */
export function defineActor<D extends ActorDefinition>(definition: D): D {
  return definition;
}

/** Options of `ActorRuntime.send`. */
export interface SendOptions {
  /** The message's id; default a new random UUID. Set it to wait for the answer before sending. */
  id?: string;
  /** The id of the message this one answers. */
  parent?: string;
  /** Where the answer goes. */
  replyTo?: string;
  /** When the sender stops waiting, in ms since the epoch. */
  deadline?: number;
  /**
   * Also store the signed message as a value under `key` for `ttlMs` ms (e.g. a result kept for
   * clients that fetch it later; read it back with `ActorSystem.load`). The value is
   * written before the message, without waiting: a failure to store is an `"error"` event.
   */
  keep?: { key: string; ttlMs: number };
  /**
   * The sender hands `content` over: it will neither use nor change it again. Delivered to an
   * actor of this system, it is then passed as it is, not copied (it is still checked, and a
   * content that cannot be sent still throws `SerializationError`).
   */
  handOver?: boolean;
}

/** Options of `ActorRuntime.ask`. */
export interface AskOptions {
  /** How long to wait for the answer, in ms. Default 30,000. */
  timeout?: number;
  /** Cancels the wait. */
  signal?: AbortSignal;
}

/** A message for {@linkcode ActorRuntime.sendMany}. */
export interface OutgoingMessage {
  /** The address it goes to. */
  to: string;
  /** Its type: the handler that takes it. */
  type: string;
  /** Its content. */
  content?: unknown;
  /** How it is sent; `from` names the sending actor (default the system's reply address). */
  options?: SendOptions & { from?: string };
}

/**
 * What the handlers of an actor can use of the system they run on, as `context.system`. An
 * `ActorSystem` is one. Its `error` events are the system's.
 */
export interface ActorRuntime extends EventTarget {
  /** The system's id, unique among the systems of a cluster. */
  readonly id: string;
  /** The transport the system reads and writes. */
  readonly transport: Transport;
  /** The stream-key prefix of the system's streams. */
  readonly namespace: string;
  /** The address answers to this system's asks go to. */
  readonly replyAddress: string;
  /** The key of the stream that is the inbox of `address`. */
  inboxOf(address: string): string;
  /** Starts actor `definition` under `address`, reading its inbox. */
  spawn(address: string, definition: ActorDefinition): void;
  /** Stops the actor at `address` once the message it handles is done. */
  stopActor(address: string): Promise<void>;
  /**
   * How many ordinary messages the actor at `address` has been handed and not yet started; 0 for
   * an address no actor of this system holds.
   */
  queueLength(address: string): number;
  /** Signs and writes one message to the inbox of `to`. Returns its id. */
  send(
    to: string,
    type: string,
    content?: unknown,
    options?: SendOptions & { from?: string },
  ): Promise<string>;
  /**
   * Signs and writes several messages in one round trip. Returns their ids. With `uncapped`, the
   * streams are not trimmed.
   */
  sendMany(
    messages: readonly OutgoingMessage[],
    options?: { uncapped?: boolean },
  ): Promise<string[]>;
  /** Sends a message and waits for its answer. */
  ask<T = unknown>(
    to: string,
    type: string,
    content?: unknown,
    options?: AskOptions & { from?: string },
  ): Promise<T>;
  /**
   * Hands each of `envelopes` to the actor of this system it is addressed to without the
   * transport. Returns the envelopes addressed to no actor here, which are not delivered.
   */
  deliver(envelopes: readonly Envelope[]): Envelope[];
  /** Whether a message to `address` is handed over without the transport. */
  deliversLocally(address: string): boolean;
}
