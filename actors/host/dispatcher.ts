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
import { defineActor } from "../core/actor.ts";
import type { Envelope } from "../../transport/envelope.ts";
import { engineMessageId } from "../protocol/addresses.ts";
import type { DispatchRequest } from "../protocol/messages.ts";

/** The dispatcher actor of host `hostId`. */
export function dispatcherActor(hostId: string) {
  return defineActor({
    handlers: {
      dispatch: async (request: DispatchRequest, ctx) => {
        const { envelope, system } = ctx;
        const problem = malformed(request);
        if (problem) {
          // No one waits on the dispatch message itself: tell the engines' callers when they can
          // be found, and say it on the system either way.
          const error = new TypeError(`Cannot dispatch on host ${hostId}: ${problem}`);
          system.dispatchEvent(new ErrorEvent("error", { error, message: error.message }));
          const { call, engineIds, replyTo } = request ?? {};
          if (typeof call !== "string" || typeof replyTo !== "string") return;
          if (!Array.isArray(engineIds)) return;
          await Promise.all(
            engineIds.filter(Number.isInteger).map((engineId) =>
              system.send(replyTo, "reply", {
                ok: false,
                error: { name: error.name, message: error.message },
              }, { parent: engineMessageId(call, engineId), from: `engine.${engineId}` })
            ),
          );
          return;
        }
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

/** What is wrong with the shape of `request`, or `undefined`. */
function malformed(request: DispatchRequest): string | undefined {
  if (typeof request !== "object" || request === null) return "the request is not an object";
  const { call, type, engineIds, contents, replyTo } = request;
  if (typeof call !== "string") return "call must be a string";
  if (typeof type !== "string") return "type must be a string";
  if (typeof replyTo !== "string") return "replyTo must be a string";
  if (!Array.isArray(engineIds) || !engineIds.every(Number.isInteger)) {
    return "engineIds must be an array of integers";
  }
  if (
    contents !== undefined && (!Array.isArray(contents) || contents.length !== engineIds.length)
  ) {
    return "contents must be an array with one content per engine";
  }
  return undefined;
}
