// Refusing replayed and redirected entries. An envelope is signed with its namespace's key and
// names its recipient (`to`), so an entry is accepted only from the recipient's own stream. A
// replay (a copy of an entry appended again, with redis-cli say) gets a new entry id, whose time is
// the server's clock when it was appended: an entry appended longer than the replay window after
// its envelope was signed is refused, whatever its age when read. Within the window, each reader
// remembers the message ids it took from each stream and drops a second entry of one.
import type { Envelope } from "../../transport/envelope.ts";
import type { StreamEntry } from "../../transport/types.ts";

/**
 * The default `replayWindowMs`: how long after it was signed an entry may be appended. It covers
 * the clock difference between the sender and the server plus a write sent again after a
 * reconnect (at most the transport's `commandTimeoutMs`, 10 s by default).
 */
export const DEFAULT_REPLAY_WINDOW_MS = 60_000;

/** The time part (ms since the epoch, by the server's clock) of a stream entry id `<ms>-<seq>`. */
export function entryTime(id: string): number {
  const dash = id.indexOf("-");
  return Number(dash < 0 ? id : id.slice(0, dash));
}

/**
 * Why `envelope`, read in `entry` from stream `stream` where `expected` is the stream it should
 * have come from, is refused as a replay or a redirection; `undefined` when it is not.
 */
export function replayReason(
  entry: StreamEntry,
  envelope: Envelope,
  expected: string,
  windowMs: number,
): string | undefined {
  if (entry.stream !== expected) {
    return `replayed: a message to "${envelope.to}" found in ${entry.stream}`;
  }
  const late = entryTime(entry.id) - envelope.sent;
  if (!(late <= windowMs)) {
    return `replayed: appended ${late} ms after it was signed (the window is ${windowMs} ms)`;
  }
  return undefined;
}

/** The first entry of each message taken from each stream, while a replay of it could pass. */
export class RecentMessages {
  readonly #windowMs: number;
  readonly #streams = new Map<string, { newest: number; first: Map<string, Seen> }>();

  /** Remembers messages for twice `windowMs` of their stream's entry times. */
  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /**
   * The tag of the first entry that brought message `envelopeId` from `entry`'s stream, recording
   * `tag` when this is the first. A message is forgotten once its stream holds entries appended
   * more than twice the window after it: a copy appended after those is then refused as late.
   */
  first(entry: StreamEntry, envelopeId: string, tag: string): string {
    let stream = this.#streams.get(entry.stream);
    if (!stream) this.#streams.set(entry.stream, stream = { newest: 0, first: new Map() });
    const seen = stream.first.get(envelopeId);
    if (seen) return seen.tag;
    const at = entryTime(entry.id);
    stream.newest = Math.max(stream.newest, at);
    stream.first.set(envelopeId, { tag, at });
    const horizon = stream.newest - 2 * this.#windowMs;
    for (const [id, { at }] of stream.first) {
      if (at >= horizon || stream.first.size <= MIN_REMEMBERED) break;
      stream.first.delete(id);
    }
    return tag;
  }
}

interface Seen {
  tag: string;
  at: number;
}

/** Each stream's last messages are remembered however old they are. */
const MIN_REMEMBERED = 1000;
