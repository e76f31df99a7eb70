/**
 * A host's task reader, the actor `tasks.<hostId>`: it feeds the host's engines the tasks of
 * load-balanced views from their shared task streams. Every engine is a consumer of the stream's
 * group {@linkcode TASK_GROUP}, named `<hostId>:<engineId>`, and reads the next task only when it
 * holds fewer than `prefetch` (default 1): no task waits behind a long one while another engine
 * idles. A task is handed to its engine as if it had come to the engine's inbox (queued behind
 * the engine's other messages), and acknowledged once the engine's answer is written.
 *
 * A task an engine took and did not answer stays pending under that engine's consumer: when the
 * engine dies, the client claims it from there and sends it again
 * ({@linkcode Transport.claimFrom}).
 *
 * The reader learns of a stream from `nudge` control messages, which a client sends each host
 * after appending tasks (`{ stream, engineIds, prefetch }`: the stream's address and the engines
 * that serve it). Reads do not block: an engine with room reads after each nudge and after each
 * task it finishes, until a read comes back empty, and once a second as a safety net.
 *
 * @module
 */
import type { Transport } from "../../transport/types.ts";
import { defineActor } from "../core/actor.ts";
import { Acks } from "../core/_acks.ts";
import type { ActorSystem } from "../core/system.ts";
import type { Nudge } from "../protocol/messages.ts";
import { TASK_GROUP, taskConsumer, taskReaderAddress } from "../protocol/addresses.ts";

/** How often an engine with room reads its streams without being nudged, in ms. */
const POLL_MS = 1000;

/** One engine of the host as the reader feeds it. */
interface Feed {
  engineId: number;
  consumer: string;
  /** Task stream keys it serves. */
  streams: Set<string>;
  /** Tasks it holds: taken, not yet answered. */
  held: number;
  prefetch: number;
  reading: boolean;
  /** A nudge came while it was reading: read again even if that read came back empty. */
  nudged: boolean;
}

/**
 * Spawns the task reader of host `hostId` on `system`, feeding engines `engineIds` (spawned
 * there as `engine.<id>`). It stops with the system.
 */
export function spawnTaskReader(system: ActorSystem, hostId: string, engineIds: number[]): void {
  const transport: Transport = system.transport;
  const feeds = new Map<number, Feed>(
    engineIds.map((engineId) => [engineId, {
      engineId,
      consumer: taskConsumer(hostId, engineId),
      streams: new Set(),
      held: 0,
      prefetch: 1,
      reading: false,
      nudged: false,
    }]),
  );
  let stopped = false;

  const pump = async (feed: Feed): Promise<void> => {
    if (stopped || feed.reading || feed.streams.size === 0) return;
    feed.reading = true;
    try {
      while (!stopped && feed.held < feed.prefetch) {
        feed.nudged = false;
        const entries = await transport.read(TASK_GROUP, feed.consumer, [...feed.streams], {
          count: feed.prefetch - feed.held,
          blockMs: 0,
        });
        if (entries.length === 0 && !feed.nudged) break;
        for (const entry of entries) {
          feed.held++;
          // The engine reads its next task as soon as this one's handler returned, while the
          // answer is written; the task is acknowledged only once its answer is.
          let released = false;
          const release = () => {
            if (released) return;
            released = true;
            feed.held--;
            if (!stopped) pump(feed);
          };
          system.handleEntry(entry, `engine.${feed.engineId}`, release).finally(() => {
            release();
            acks.ack(entry);
          });
        }
      }
    } catch (error) {
      if (!stopped) report(error);
    } finally {
      feed.reading = false;
    }
  };

  const report = (error: unknown) => {
    system.dispatchEvent(
      new ErrorEvent("error", { error, message: String((error as Error)?.message ?? error) }),
    );
  };

  // The tasks answered in one turn are acknowledged together (one XACK per stream), and an ack
  // that fails is tried again until it goes through.
  const acks = new Acks(transport, {
    closed: () => stopped,
    acknowledged: () => {},
    settled: () => {},
    failed: report,
  }, TASK_GROUP);

  const poll = setInterval(() => {
    for (const feed of feeds.values()) pump(feed);
  }, POLL_MS);
  Deno.unrefTimer(poll);

  system.spawn(
    taskReaderAddress(hostId),
    defineActor({
      handlers: {},
      control: {
        nudge: (nudge: Nudge) => {
          if (
            typeof nudge !== "object" || nudge === null || typeof nudge.stream !== "string" ||
            !Array.isArray(nudge.engineIds) || !Number.isInteger(nudge.prefetch) ||
            nudge.prefetch < 1
          ) {
            throw new TypeError(
              "Cannot take tasks: a nudge must be { stream, engineIds, prefetch }",
            );
          }
          const stream = system.inboxOf(nudge.stream);
          for (const engineId of nudge.engineIds) {
            const feed = feeds.get(engineId);
            if (!feed) continue;
            feed.streams.add(stream);
            feed.prefetch = nudge.prefetch;
            feed.nudged = true;
            pump(feed);
          }
        },
      },
      stopped: () => {
        stopped = true;
        clearInterval(poll);
      },
    }),
  );
}
