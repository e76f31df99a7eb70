/**
 * Per-engine order of one client's calls across the routes they take to engines: through the
 * hosts' dispatchers (`DirectView`), or through a broadcast tree from its root (`BroadcastView`:
 * the hub, or the node of the one host its engines run on). Each route keeps a client's calls in
 * order at every engine, but routes take different hops, so a call could overtake one made
 * before it by another route. A call is therefore sent only once the calls of other routes still
 * pending on its engines have answered there, as IPython Parallel runs a client's calls on each
 * engine in the order they were made.
 *
 * @module
 */

/** The last pending call of each route (first hop) on each engine. */
export class CallPaths {
  readonly #last = new Map<string, Map<number, Promise<unknown>>>();

  /**
   * Settles when every call sent by another route than `route` and still pending on one of
   * `targets` has answered there; `undefined` when there is none.
   */
  before(route: string, targets: readonly number[]): Promise<void> | undefined {
    const pending: Promise<unknown>[] = [];
    for (const [other, last] of this.#last) {
      if (other === route) continue;
      for (const engineId of targets) {
        const done = last.get(engineId);
        if (done) pending.push(done);
      }
    }
    if (pending.length === 0) return undefined;
    return Promise.allSettled(pending).then(() => {});
  }

  /** Notes a call sent by `route` whose part on `targets[i]` settles with `outcomes[i]`. */
  note(route: string, targets: readonly number[], outcomes: readonly Promise<unknown>[]): void {
    let last = this.#last.get(route);
    if (!last) this.#last.set(route, last = new Map());
    targets.forEach((engineId, i) => {
      const done = outcomes[i];
      last.set(engineId, done);
      const clear = () => {
        if (last.get(engineId) === done) last.delete(engineId);
        if (last.size === 0 && this.#last.get(route) === last) this.#last.delete(route);
      };
      done.then(clear, clear);
    });
  }
}
