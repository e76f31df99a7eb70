/**
 * What an actor is: a handler per message type. Spawn one on an {@linkcode ActorSystem} under an
 * address; its inbox is the stream of that address.
 *
 * @module
 */
import type { Envelope } from "../transport/envelope.ts";
import type { ActorSystem, AskOptions, SendOptions } from "./system.ts";

/** What a handler sees besides the message's content. */
export interface ActorContext {
  /** The address of the actor handling the message. */
  readonly self: string;
  /** The system the actor runs on. */
  readonly system: ActorSystem;
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
