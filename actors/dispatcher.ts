/**
 * A host's dispatcher, the actor `dispatch.<hostId>`: it takes one message of a
 * `DirectView` call for the engines of its host and hands each of them its own task, as
 * if the task had come straight to the engine's inbox: the same message id
 * (`engineMessageId(call, engineId)`), reply address, sent time and deadline. Each engine answers
 * the client itself, so a DirectView still gets one answer per engine, as they finish.
 *
 * A DirectView call thus crosses the transport once per host instead of once per engine (one
 * signature, one entry, one acknowledgement), and the engines of a host start it together.
 * Every DirectView call goes through the dispatcher, even to one engine, so an engine runs a
 * client's DirectView calls in the order they were made.
 *
 * @module
 */
import { defineActor } from "./actor.ts";
import { engineMessageId } from "./engine.ts";
import type { Envelope } from "../transport/envelope.ts";

/** What a host's dispatcher is sent: one DirectView call, for the targets on its host. */
export interface DispatchRequest {
  /** The call's id. Engine `e`'s task has message id `engineMessageId(call, e)`. */
  call: string;
  /** The type of the engines' messages: the operation (`execute`, `apply`, `push`…). */
  type: string;
  /** The call's targets on this host, in the view's order. */
  engineIds: number[];
  /** The content every target gets; absent when `contents` is given. */
  content?: unknown;
  /** Each target's own content (a scatter's chunks), in `engineIds` order. */
  contents?: unknown[];
  /** Where the engines send their answers. */
  replyTo: string;
}

/** The address of the dispatcher of host `hostId`. */
export function dispatcherAddress(hostId: string): string {
  return `dispatch.${hostId}`;
}

/** The dispatcher actor of host `hostId`. */
export function dispatcherActor(hostId: string) {
  return defineActor({
    handlers: {
      dispatch: async (request: DispatchRequest, ctx) => {
        const { envelope, system } = ctx;
        const tasks: Envelope[] = request.engineIds.map((engineId, i) => ({
          id: engineMessageId(request.call, engineId),
          type: request.type,
          from: envelope.from,
          to: `engine.${engineId}`,
          replyTo: request.replyTo,
          sent: envelope.sent,
          ...(envelope.deadline === undefined ? {} : { deadline: envelope.deadline }),
          content: request.contents ? request.contents[i] : request.content,
        }));
        const missing = system.deliver(tasks);
        // The client's map of hosts was out of date: say so in the engine's name.
        await Promise.all(missing.map((task) =>
          system.send(request.replyTo, "reply", {
            ok: false,
            error: {
              name: "EngineDiedError",
              message: `Cannot run "${task.type}" on ${task.to}: it does not run on host ${hostId}`,
            },
          }, { parent: task.id, from: task.to })
        ));
      },
    },
  });
}
