/**
 * The options of an `ActorSystem`, what its `stats` count, and the details of the events it
 * dispatches.
 *
 * @module
 */
import type { InvalidMessageError, RemoteErrorData } from "../../errors.ts";
import type { ClusterKey } from "../../transport/envelope.ts";
import type { Transport } from "../../transport/types.ts";

/** The consumer group every inbox is read through. */
export const GROUP = "actors";

/** Options of {@linkcode ActorSystem}. */
export interface ActorSystemOptions {
  /** The transport the inboxes live on. */
  transport: Transport;
  /** The cluster key that signs every message. */
  key: ClusterKey;
  /** Prefix of every stream key, so clusters (and tests) sharing a Redis stay apart. */
  namespace: string;
  /** This system's consumer name; unique in the cluster. Default: a random one. */
  id?: string;
  /** How long one blocking read waits, in ms. Default 1000. */
  blockMs?: number;
  /** Inboxes are trimmed to about this many entries. Default 10,000. */
  maxLen?: number;
  /** Entries larger than this are dead-lettered unread. Default 512 MiB. */
  maxMessageBytes?: number;
  /**
   * Bounds of the dead-letter stream: it is trimmed to about `maxLen` entries (default 1,000),
   * drops those older than `maxAgeMs` and expires that long after its last (default 24 hours),
   * and each letter keeps the first `payloadBytes` of its entry (default 1,024).
   */
  deadLetters?: { maxLen?: number; maxAgeMs?: number; payloadBytes?: number };
  /**
   * Hand messages between actors of this system, and the answers to its own asks, to the
   * recipient directly instead of through the transport. The content is still copied by the
   * codec's rules, so the recipient gets its own copy and a value that cannot be sent fails as it
   * would through the transport; but it is neither signed nor in any stream: it is lost if the
   * system dies before handling it. Default `false`.
   */
  localDelivery?: boolean;
  /**
   * The most values this system keeps stored at once (`store`, sends with `keep`): past it, the
   * oldest tenth is deleted before its time is up. Default 1,000 (IPython Parallel's hub database
   * keeps 1,024 records).
   */
  keepLimit?: number;
  /**
   * An entry delivered more than this many times without being handled (its handler crashed
   * the host each time, so it was never acknowledged) is dead-lettered instead of handled
   * again, and its asker gets a `PoisonMessageError` answer. Uses the consumer group's delivery
   * count. Default 3.
   */
  maxDeliveries?: number;
  /**
   * Entries of this system's inboxes left pending by another consumer (a dead host) for at least
   * this long, in ms, are claimed and handled here. Checked when the reader starts, when an actor
   * is spawned, and then every `claimIdleMs / 2`. Default 30,000.
   */
  claimIdleMs?: number;
  /**
   * Entries of the streams this system reads (its actors' inboxes, its reply and wake streams)
   * that every group of the stream has acknowledged are deleted once they are this old, in ms, so
   * that the streams hold only what is still to be handled plus the last moments' history.
   * `Infinity` keeps them (streams are then only capped by `maxLen`). Default 10,000.
   */
  retainAckedMs?: number;
  /**
   * An entry appended to a stream more than this long after its message was signed, in ms (by the
   * server's clock against the sender's), is a replay: it is dead-lettered, whatever its age when
   * read. Default 60,000.
   */
  replayWindowMs?: number;
}

/** What answers a message that expects an answer. */
export type Reply = { ok: true; value: unknown } | { ok: false; error: RemoteErrorData };

/** Why an entry was dead-lettered, as counted in {@linkcode ActorSystemStats.deadLetters}. */
export type DeadLetterReason =
  | "no-payload"
  | "oversized"
  | "truncated"
  | "version"
  | "signature"
  | "malformed"
  | "unknown-type"
  | "poison"
  | "replay";

/** What {@linkcode ActorSystem.stats} returns. */
export interface ActorSystemStats {
  /** Envelopes this system wrote (`send`, `sendMany`, `ask`). */
  sent: number;
  /** Envelopes its reader accepted (signature verified, body decoded). */
  received: number;
  /** Entries it moved to the dead-letter stream. */
  deadLettered: number;
  /** {@linkcode ActorSystemStats.deadLettered}, by reason. */
  deadLetters: Record<DeadLetterReason, number>;
  /** Entries read and not yet acknowledged: queued, being handled, or being acknowledged. */
  inFlight: number;
  /** Answers waited for (`ask`, `expectReply`) that have not come yet. */
  waiting: number;
  /** Entries deleted from this system's streams once acknowledged (`retainAckedMs`). */
  trimmed: number;
}

/** The `detail` of a `"deadletter"` event: an entry that was moved to the dead-letter stream. */
export interface DeadLetterDetail {
  /** Why it was dead-lettered. */
  error: InvalidMessageError;
  /** The kind of reason. */
  reason: DeadLetterReason;
}

/** The `detail` of a `"datalost"` event: the transport's server lost what it held. */
export interface DataLostDetail {
  /** What the transport found, e.g. `Redis at 127.0.0.1:6379 restarted without its data (…)`. */
  reason: string;
}
