/**
 * SPMD-style map with a BroadcastView: the Deno version of IPython Parallel's "Map-style
 * computation via SPMD using IPython Parallel Broadcast View" notebook.
 *
 * Every engine gets the same task plus its `rank` and the cluster `size`; it computes its own
 * partition of the input files and returns the md5 of each. The client flattens the ordered
 * chunks and checks them against a local `map`.
 *
 * ```sh
 * deno run -A examples/md5.ts [--engines 100] [--files-per-engine 5] [--redis redis://…]
 * ```
 *
 * @module
 */
// deno-lint-ignore-file no-console
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";
import { Cluster, Reference } from "../mod.ts";

/** Computes the partition: the `[start, end)` of `rank`'s items (as the notebook does). */
function getPartition(nItems: number, rank: number, size: number): [number, number] {
  let chunkSize = Math.floor(nItems / size);
  if (nItems % size) chunkSize += 1;
  const start = rank * chunkSize;
  const end = rank + 1 === size ? nItems : start + chunkSize;
  return [start, end];
}

/** The `.txt` files of `dir`, sorted. */
function listInputFiles(dir: string): string[] {
  return [...Deno.readDirSync(dir)]
    .filter((entry) => entry.isFile && entry.name.endsWith(".txt"))
    .map((entry) => `${dir}/${entry.name}`)
    .sort();
}

/** Our task: the md5 of the contents of one file. */
async function computeOne(fname: string): Promise<string> {
  const { createHash } = await import("node:crypto");
  return createHash("md5").update(await Deno.readFile(fname)).digest("hex");
}

/** The SPMD task: the same code everywhere, computing `rank`'s chunk of the map. */
async function spmdTask(tmpPath: string, rank: number, size: number): Promise<string[]> {
  // identify all inputs
  const allInputFiles = listInputFiles(tmpPath);
  // partition inputs
  const nItems = allInputFiles.length;
  const [start, end] = getPartition(nItems, rank, size);
  const myInputFiles = allInputFiles.slice(start, end);
  // compute result
  return await Promise.all(myInputFiles.map(computeOne));
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      engines: { type: "string", default: "100" },
      "files-per-engine": { type: "string", default: "5" },
      redis: { type: "string" },
    },
  });
  const nEngines = Number(values.engines);
  const tasksPerEngine = Number(values["files-per-engine"]);
  const transport = values.redis ?? Deno.env.get("REDIS_URL") ?? "memory:";
  const seconds = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(3)} s`;
  const whole = performance.now();

  // Set up our fake workload: a bunch of random files, 5 per engine.
  const tmpPath = await Deno.makeTempDir({ prefix: "md5-" });
  try {
    const nItems = nEngines * tasksPerEngine;
    for (let i = 0; i < nItems; i++) {
      const name = `${tmpPath}/file-${String(i).padStart(3, "0")}.txt`;
      await Deno.writeFile(name, crypto.getRandomValues(new Uint8Array(1024)));
    }
    const inputFiles = listInputFiles(tmpPath);
    console.log(`${inputFiles.length} input files in ${tmpPath}`);

    let t = performance.now();
    const localResult = inputFiles.map((f) =>
      createHash("md5").update(Deno.readFileSync(f)).digest("hex")
    );
    console.log(`local map: ${seconds(t)}`);

    // Now it's time to do it in parallel.
    t = performance.now();
    await using cluster = new Cluster({ n: nEngines, transport });
    const rc = await cluster.startAndConnect();
    const startTime = seconds(t);
    const broadcastView = rc.broadcastView();

    // Distribute rank and size, and the functions the task uses.
    t = performance.now();
    await broadcastView.scatter("rank", rc.ids, { flatten: true });
    const size = rc.ids.length;
    await broadcastView.push({ size, getPartition, listInputFiles, computeOne });
    const scatterTime = seconds(t);

    // The SPMD task, as a single task on all engines.
    t = performance.now();
    const ar = broadcastView.apply(spmdTask, tmpPath, new Reference("rank"), size);
    await ar.waitInteractive(); // a progress bar, on stderr (in the cell, in a notebook)
    const chunks = await ar;
    const applyTime = seconds(t);

    // Reconstruct the result: the chunks come back in engine order.
    const parallelResult = chunks.flat();
    console.log("parallel:", parallelResult.slice(0, 6));
    console.log("local:   ", localResult.slice(0, 6));
    if (JSON.stringify(parallelResult) !== JSON.stringify(localResult)) {
      throw new Error("parallel result differs from the local result");
    }
    console.log(`parallel result equals local result (${parallelResult.length} md5s)`);

    t = performance.now();
    await cluster.stop();
    const stopTime = seconds(t);
    console.log(
      `engines: ${nEngines} (${transport.replace(/\/\/[^@]*@/, "//")})\n` +
        `start: ${startTime}  scatter/push: ${scatterTime}  apply: ${applyTime}  stop: ${stopTime}`,
    );
  } finally {
    await Deno.remove(tmpPath, { recursive: true });
  }
  console.log(`whole script: ${seconds(whole)}`);
}
