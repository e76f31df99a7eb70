/**
 * The direct view: each engine of the view gets its own task and answers on its own, through
 * one message per host to the host's dispatcher.
 *
 * @module
 */
import { AsyncResult, type Outcome, type Shape } from "./async_result.ts";
import type { ViewHost } from "./_view_host.ts";
import { abortOnSignal, type CallOptions, engineTimeout, View } from "./view.ts";
import { chunkContent, partition } from "../protocol/partition.ts";
import { dispatcherAddress, engineMessageId } from "../protocol/addresses.ts";
import type { DispatchRequest, Operation } from "../protocol/messages.ts";
import type { EngineResult } from "../protocol/results.ts";

/**
 * A view whose engines each get their own task and answer (IPython Parallel's `DirectView`). A
 * call travels as one message per host, to the host's dispatcher, which hands each of its engines
 * its task; each engine answers on its own.
 *
 * @example Each engine answers on its own
 * ```ts
 * import assert from "node:assert/strict";
 * import { Cluster } from "../../mod.ts";
 *
 * await using cluster = new Cluster({ n: 2, progress: false });
 * const client = await cluster.startAndConnect();
 * const view = client.view([1, 0]);
 * assert.deepEqual(await view.pull("id"), [1, 0]);
 * ```
 */
export class DirectView<S extends Shape = "list"> extends View<S> {
  readonly #host: ViewHost;

  /** Makes a view on `targets`, of shape `shape` (see `View`); use `client.view()`. */
  constructor(host: ViewHost, targets: readonly number[], shape: S = "list" as S) {
    super(host, targets, shape);
    this.#host = host;
  }

  /** Sends `operation` to each host of the view's engines in one round trip of appends. */
  protected dispatch(operation: Operation, options: CallOptions, id: string): AsyncResult<unknown> {
    const host = this.#host;
    const { targets } = this;
    const { signal } = options;
    const timeout = options.timeout ?? Infinity;
    const deadline = Number.isFinite(timeout) ? Date.now() + timeout : undefined;
    const live = targets.filter((engineId) => !host.deadEngine(engineId));
    const answered = new Set<number>();
    const outcomes = targets.map((engineId) => {
      const dead = host.deadEngine(engineId);
      if (dead) return Promise.resolve<Outcome>({ engineId, error: dead });
      return host.system
        .expectReply<EngineResult>(
          engineMessageId(id, engineId),
          `engine.${engineId}`,
          timeout,
          signal,
          operation.type,
        )
        .then(
          (result): Outcome => {
            answered.add(engineId);
            return { engineId, result };
          },
          (error): Outcome => ({
            engineId,
            error: engineTimeout(error, engineId, timeout) as Error,
          }),
        );
    });
    const byHost = new Map<string, number[]>();
    targets.forEach((engineId, i) => {
      if (host.deadEngine(engineId)) return;
      const hostId = host.hostOf(engineId);
      const positions = byHost.get(hostId);
      if (positions) positions.push(i);
      else byHost.set(hostId, [i]);
    });
    const messages = [...byHost].map(([hostId, positions]) => {
      const request: DispatchRequest = {
        call: id,
        type: operation.type,
        engineIds: positions.map((i) => targets[i]),
        replyTo: host.system.replyAddress,
      };
      const { scatter } = operation;
      if (scatter) {
        request.contents = positions.map((i) =>
          chunkContent(operation.content, scatter, partition(scatter.sequence, i, targets.length))
        );
      } else request.content = operation.content;
      return {
        to: dispatcherAddress(hostId),
        type: "dispatch",
        content: request,
        options: { deadline },
      };
    });
    host.system.sendMany(messages).then(() => {
      for (const engineId of live) host.system.written(engineMessageId(id, engineId));
    }, (error) => {
      for (const engineId of live) host.system.failReply(engineMessageId(id, engineId), error);
    });
    const abort = () => host.abortCall(id, live.filter((e) => !answered.has(e)));
    abortOnSignal(signal, Promise.all(outcomes), abort);
    const echo = host.echoOutput();
    return new AsyncResult(
      id,
      targets,
      outcomes.map((o) => o.then(echo)),
      abort,
    );
  }
}
