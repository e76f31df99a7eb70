/**
 * Where the nodes of a broadcast tree run and which answers are kept: pure functions of the
 * targets, their hosts and the fanout, computed alike by the client and by broadcast nodes.
 *
 * @module
 */
import { broadcastAddress } from "./addresses.ts";
import { partitionBounds } from "./partition.ts";

/**
 * The `[start, end)` bounds, relative to the range, of the at most `fanout` chunks a node splits
 * a range of `size` targets on `runs` into. A range on one host splits into chunks of
 * neighbouring positions whose sizes differ by at most one; a range spanning hosts splits at host
 * boundaries, whole runs per chunk, so that one message reaches each run.
 */
export function chunkBounds(
  size: number,
  fanout: number,
  runs: readonly [string, number][],
): [number, number][] {
  if (runs.length <= 1) {
    const chunks = Math.min(fanout, size);
    return Array.from({ length: chunks }, (_, c) => partitionBounds(size, c, chunks));
  }
  const chunks = Math.min(fanout, runs.length);
  const bounds: [number, number][] = [];
  let start = 0;
  for (let c = 0; c < chunks; c++) {
    const [first, end] = partitionBounds(runs.length, c, chunks);
    let count = 0;
    for (let r = first; r < end; r++) count += runs[r][1];
    bounds.push([start, start + count]);
    start += count;
  }
  return bounds;
}

/** The node that handles the range `[lo, hi)` on `runs`: named after its first split point. */
export function nodeFor(
  lo: number,
  hi: number,
  fanout: number,
  runs: readonly [string, number][],
): number {
  return hi - lo > 1 ? lo + chunkBounds(hi - lo, fanout, runs)[0][1] : 0;
}

/**
 * The nodes of a broadcast over `size` targets on `runs` that run on the hub: those of the
 * ranges spanning several hosts.
 */
export function hubNodes(
  size: number,
  runs: readonly [string, number][],
  fanout: number,
): number[] {
  const nodes: number[] = [];
  const visit = (lo: number, hi: number, on: readonly [string, number][]) => {
    if (on.length <= 1) return;
    nodes.push(nodeFor(lo, hi, fanout, on));
    for (const [a, b] of chunkBounds(hi - lo, fanout, on)) {
      if (b - a > 1) visit(lo + a, lo + b, sliceRuns(on, a, b));
    }
  };
  visit(0, size, runs);
  return nodes;
}

/** `hosts` (one per position) as runs of `[host, count]`. */
export function toRuns(hosts: readonly string[]): [string, number][] {
  const runs: [string, number][] = [];
  for (const host of hosts) {
    const last = runs[runs.length - 1];
    if (last && last[0] === host) last[1]++;
    else runs.push([host, 1]);
  }
  return runs;
}

/** A part of a broadcast's answer kept in the transport: the answer to message `id`. */
export interface KeptPiece {
  /** The message whose answer is kept (under `resultKey(namespace, id)`). */
  id: string;
  /** Who answered it: a node or an engine. */
  from: string;
  /** The first target position the answer covers. */
  lo: number;
  /** The end of the positions it covers. */
  hi: number;
}

/**
 * Where the answer of broadcast `call` over `targets` is kept. Every message that crossed the
 * transport to an engine host keeps its answer there: the answer of a node on an engine host
 * whose request came from the hub or the client (it covers the node's whole range), and that of
 * an engine whose task came from the hub. Hops inside a host keep nothing: an answer is kept once,
 * by the host, in one piece, whatever its number of engines.
 */
export function keptPieces(
  call: string,
  targets: readonly number[],
  hosts: readonly [string, number][],
  hub: string,
  fanout: number,
): KeptPiece[] {
  const pieces: KeptPiece[] = [];
  const node = (id: string, lo: number, hi: number, runs: [string, number][]) => {
    const place = placeRange(runs, hub);
    if (place !== hub) {
      pieces.push({ id, from: broadcastAddress(place, nodeFor(lo, hi, fanout, runs)), lo, hi });
      return;
    }
    for (const [c, [a, b]] of chunkBounds(hi - lo, fanout, runs).entries()) {
      if (b - a === 1) {
        const engineId = targets[lo + a];
        pieces.push({
          id: `${call}_${engineId}`,
          from: `engine.${engineId}`,
          lo: lo + a,
          hi: lo + b,
        });
      } else node(`${id}.${c}`, lo + a, lo + b, sliceRuns(runs, a, b));
    }
  };
  node(call, 0, targets.length, [...hosts]);
  return pieces;
}

/** Where the node of a range of engines on `hosts` runs: their host if one, else the hub. */
export function placeRange(hosts: readonly [string, number][], hub: string): string {
  return hosts.length === 1 ? hosts[0][0] : hub;
}

/** The runs of positions `[from, to)` of `runs`. */
export function sliceRuns(
  runs: readonly [string, number][],
  from: number,
  to: number,
): [string, number][] {
  const sliced: [string, number][] = [];
  let start = 0;
  for (const [host, count] of runs) {
    const a = Math.max(from, start);
    const b = Math.min(to, start + count);
    if (a < b) sliced.push([host, b - a]);
    start += count;
  }
  return sliced;
}
