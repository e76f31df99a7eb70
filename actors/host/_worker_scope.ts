// The global scope of a Worker, typed here because a published package may not use
// `/// <reference lib="deno.worker" />`: that directive changes the globals of the whole graph.

/** What a Worker's script uses of its global scope. */
export interface WorkerScope {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<never>) => unknown) | null;
  close(): void;
}

/** The running Worker's global scope. */
export const workerScope = globalThis as unknown as WorkerScope;
