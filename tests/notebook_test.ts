/**
 * `examples/md5.ipynb` and `examples/bintree.ipynb` run as a user runs them: executed headless by
 * `jupyter nbconvert --to notebook` with nbconvert's execute preprocessor (waiting for late outputs:
 * `fixtures/settling_execute.py`) on Deno's Jupyter kernel (installed by
 * `deno jupyter --install` into a temporary home, never the user's), on the embedded transport and
 * on a private `redis-server`. The checks read the executed notebook's saved outputs.
 *
 * Ignored, with the reason on stderr, when `jupyter nbconvert` is not installed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Cluster } from "../mod.ts";
import { connectAdmin } from "./_redis_server.ts";
import { installKernel, missingJupyter } from "./_jupyter.ts";
import { type Backend, BACKENDS, type CaseOptions, forEachBackend } from "./_backends.ts";

const EXAMPLES = fileURLToPath(new URL("../examples/", import.meta.url));
const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
const ENGINES = 4;
const FILES_PER_ENGINE = 5;
const NOTEBOOK_TIMEOUT_MS = 90_000;

const noJupyter = await missingJupyter();
// deno-lint-ignore no-console
if (noJupyter) console.warn(`notebook_test: notebook tests ignored: ${noJupyter}`);

/** Each notebook case: ignored without Jupyter; the kernel's processes are not this test's. */
const NOTEBOOK_CASE: CaseOptions = {
  ignore: noJupyter !== undefined,
  sanitize: false,
  timeoutMs: 180_000,
};

/** One output of a code cell, as nbformat 4 saves it. */
interface Output {
  output_type: "stream" | "execute_result" | "display_data" | "error";
  text?: string | string[];
  data?: Record<string, string | string[] | unknown>;
  execution_count?: number;
  ename?: string;
  evalue?: string;
}

/** A notebook, as nbformat 4 saves it. */
interface Notebook {
  cells: { cell_type: string; id: string; source: string | string[]; [key: string]: unknown }[];
  metadata: Record<string, unknown>;
}

/** A code cell of an executed notebook: its source, its execution count and its outputs. */
interface ExecutedCell {
  source: string;
  count: number;
  outputs: Output[];
}

const joined = (text: string | string[] | undefined): string =>
  Array.isArray(text) ? text.join("") : text ?? "";

// deno-lint-ignore no-control-regex
const stripAnsi = (text: string): string => text.replace(/\u001b\[[0-9;]*m/g, "");

/**
 * Executes `examples/<name>.ipynb` (or `edit` of it, written next to the output) on the Deno
 * kernel and returns its saved code cells.
 */
async function executeNotebook(
  name: string,
  redis: string | undefined,
  edit?: (notebook: Notebook) => Notebook,
): Promise<ExecutedCell[]> {
  const work = await Deno.makeTempDir({ prefix: "deno-parallel-notebook-" });
  try {
    let input = `${EXAMPLES}${name}.ipynb`;
    if (edit) {
      input = `${work}/input/${name}.ipynb`;
      await Deno.mkdir(`${work}/input`);
      const original = JSON.parse(await Deno.readTextFile(`${EXAMPLES}${name}.ipynb`));
      await Deno.writeTextFile(input, JSON.stringify(edit(original)));
    }
    const jupyterPath = await installKernel(`${work}/home`);
    const env: Record<string, string> = {
      JUPYTER_PATH: jupyterPath,
      PYTHONPATH: FIXTURES,
      N_ENGINES: String(ENGINES),
      NO_COLOR: "1",
    };
    if (redis) env.REDIS_URL = redis;
    const command = new Deno.Command("jupyter", {
      args: [
        "nbconvert",
        "--to",
        "notebook",
        // `--execute`, with the execute preprocessor that waits for Deno's late outputs.
        `--NotebookExporter.preprocessors=["settling_execute.SettlingExecutePreprocessor"]`,
        "--SettlingExecutePreprocessor.enabled=True",
        "--SettlingExecutePreprocessor.kernel_name=deno",
        `--SettlingExecutePreprocessor.timeout=${NOTEBOOK_TIMEOUT_MS / 1000}`,
        "--output-dir",
        work,
        input,
      ],
      cwd: EXAMPLES,
      env,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(NOTEBOOK_TIMEOUT_MS + 30_000),
    });
    const { code, stderr } = await runWithout(command, redis ? [] : ["REDIS_URL"]);
    assert.equal(code, 0, `nbconvert of ${name}.ipynb failed:\n${stderr}`);
    const notebook = JSON.parse(await Deno.readTextFile(`${work}/${name}.ipynb`));
    assert.equal(notebook.metadata.kernelspec.name, "deno");
    const cells: ExecutedCell[] = notebook.cells
      .filter((cell: { cell_type: string }) => cell.cell_type === "code")
      .map((cell: { source: string | string[]; execution_count: number; outputs: Output[] }) => ({
        source: joined(cell.source),
        count: cell.execution_count,
        outputs: cell.outputs,
      }));
    for (const cell of cells) {
      const error = cell.outputs.find((o) => o.output_type === "error");
      assert.equal(error, undefined, `cell failed: ${cell.source}\n${error?.evalue}`);
    }
    return cells;
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

/** Runs `command` with `unset` removed from the environment it inherits. */
async function runWithout(
  command: Deno.Command,
  unset: string[],
): Promise<{ code: number; stderr: string }> {
  const saved = unset.map((name) => [name, Deno.env.get(name)] as const);
  for (const name of unset) Deno.env.delete(name);
  try {
    const { code, stderr } = await command.output();
    return { code, stderr: new TextDecoder().decode(stderr) };
  } finally {
    for (const [name, value] of saved) if (value !== undefined) Deno.env.set(name, value);
  }
}

/** The one cell whose source starts with `start`. */
function cell(cells: ExecutedCell[], start: string): ExecutedCell {
  const found = cells.filter((c) => c.source.startsWith(start));
  assert.equal(found.length, 1, `one cell starting with ${JSON.stringify(start)}`);
  return found[0];
}

/**
 * The streamed text (`console.log` output) of the cell starting with `start` and of every cell
 * after it: Deno's kernel may deliver a cell's last lines while the next cell runs, and the
 * saved notebook then shows them under that cell.
 */
function streamFrom(cells: ExecutedCell[], start: string): string {
  return cells.slice(cells.indexOf(cell(cells, start))).flatMap((c) => c.outputs)
    .filter((o) => o.output_type === "stream").map((o) => joined(o.text)).join("");
}

/**
 * The result (last expression) of the cell starting with `start`, as `mime`: found by its
 * execution count, wherever the saved notebook put it (see {@linkcode streamFrom}).
 */
function resultOf(cells: ExecutedCell[], start: string, mime = "text/plain"): string {
  const { count, source } = cell(cells, start);
  const result = cells.flatMap((c) => c.outputs)
    .find((o) => o.output_type === "execute_result" && o.execution_count === count);
  assert.ok(result, `no result of cell ${count}: ${source}\n${JSON.stringify(cells, null, 1)}`);
  return stripAnsi(joined(result.data?.[mime] as string | string[]));
}

/** The `display_data` outputs of the cell starting with `start`, as `mime`. */
function displaysOf(cells: ExecutedCell[], start: string, mime = "text/plain"): string[] {
  return cell(cells, start).outputs.filter((o) => o.output_type === "display_data")
    .map((o) => stripAnsi(joined(o.data?.[mime] as string | string[])));
}

// The seed notebook's partition table for n = 10 and sizes 3, 4, 5 (its saved output).
const SEED_PARTITIONS = `3 0 (0, 4)
3 1 (4, 8)
3 2 (8, 10)
4 0 (0, 3)
4 1 (3, 6)
4 2 (6, 9)
4 3 (9, 10)
5 0 (0, 2)
5 1 (2, 4)
5 2 (4, 6)
5 3 (6, 8)
5 4 (8, 10)
`;

/**
 * Fails when the test's own Redis holds a key a cluster left behind; the server-wide epoch key
 * (see docs/protocol.md) stays by design.
 */
async function assertRedisEmpty(url: string): Promise<void> {
  await using admin = await connectAdmin(url);
  const keys = (await admin.send(["KEYS", "*"]) as string[])
    .filter((key) => key !== "deno-parallel:epoch");
  assert.deepEqual(keys, [], "Redis keys left after the notebook stopped its cluster");
}

forEachBackend(BACKENDS, (test) => {
  test(
    "examples/md5.ipynb: executed headless, the parallel md5s equal the local",
    async (backend: Backend) => {
      const url = backend.kind === "redis" ? backend.url : undefined;
      const cells = await executeNotebook("md5", url);
      const table = streamFrom(cells, "const n = 10;")
        .replace(/\[ (\d+), (\d+) \]/g, "($1, $2)");
      assert.equal(table.slice(0, SEED_PARTITIONS.length), SEED_PARTITIONS);
      const nItems = ENGINES * FILES_PER_ENGINE;
      assert.equal(resultOf(cells, "/** The `.txt` files"), String(nItems));
      const [parallel, local] = JSON.parse(resultOf(cells, "[parallelResult.slice(0, 6)"));
      assert.equal(parallel.length, 6);
      for (const md5 of parallel) assert.match(md5, /^[0-9a-f]{32}$/);
      assert.deepEqual(parallel, local);
      assert.ok(
        streamFrom(cells, 'import assert from "node:assert/strict"')
          .startsWith(`parallel result equals local result (${nItems} md5s)\n`),
      );
      // The rich displays the notebook saved.
      assert.match(
        resultOf(cells, 'import { Cluster, Reference } from "../mod.ts"', "text/html"),
        new RegExp(`<strong>Cluster dp-\\w+: ${ENGINES} of ${ENGINES} engines up</strong>`),
      );
      assert.match(
        resultOf(cells, "await broadcastView.push({ getPartition", "text/html"),
        new RegExp(`<strong>BroadcastView on ${ENGINES} engines \\(ids 0–${ENGINES - 1}\\)`),
      );
      assert.match(
        resultOf(cells, "const ar = broadcastView.apply(", "text/html"),
        new RegExp(
          `<strong>AsyncResult [^:]+: \\d/${ENGINES} done, (pending|succeeded)</strong>`,
        ),
      );
      // The progress bars, as the saved notebook shows them: updated in place to their end.
      const start = 'import { Cluster, Reference } from "../mod.ts"';
      assert.deepEqual(displaysOf(cells, start).map((t) => t.replace(/\d+\.\d+s$/, "…")), [
        `engines ${ENGINES}/${ENGINES} [${"#".repeat(30)}] …`,
      ]);
      assert.match(
        displaysOf(cells, start, "text/html")[0],
        new RegExp(
          `^<div><progress value="${ENGINES}" max="${ENGINES}"></progress> ` +
            `engines ${ENGINES}/${ENGINES} up after \\d+\\.\\d s</div>$`,
        ),
      );
      const wait = "await ar.waitInteractive();";
      assert.deepEqual(displaysOf(cells, wait).map((t) => t.replace(/\d+ s$/, "…")), [
        `${String(ENGINES).padStart(4)}/${ENGINES} tasks finished after    …`,
      ]);
      assert.match(
        displaysOf(cells, wait, "text/html")[0],
        new RegExp(`^<div><progress value="${ENGINES}" max="${ENGINES}"></progress> <code>`),
      );
      if (url) await assertRedisEmpty(url);
    },
    NOTEBOOK_CASE,
  );

  test(
    "examples/bintree.ipynb: executed headless, the seed's allreduce values",
    async (backend: Backend) => {
      const url = backend.kind === "redis" ? backend.url : undefined;
      const cells = await executeNotebook("bintree", url);
      const tree = "setting up binary tree interconnect:\n0\n  1\n  2\n    3\n";
      const printed = streamFrom(cells, "const btree = bintree(ids);");
      assert.equal(printed.slice(0, tree.length), tree);
      // The sum of range(1000) on every engine.
      const dataSum = `allreduce sum of data on all engines: ${
        JSON.stringify(Array(ENGINES).fill(499500))
      }\n`;
      const printedSum = streamFrom(cells, 'await view.execute("dataSum');
      assert.equal(printedSum.slice(0, dataSum.length), dataSum);
      const idsSum = streamFrom(cells, 'await view.execute("idsSum');
      const idsTotal = ENGINES * (ENGINES - 1) / 2;
      assert.match(
        idsSum,
        new RegExp(`^reduce sum of engine ids \\(not broadcast\\): ${idsTotal}\n`),
      );
      // Each engine holds the sum of its subtree's ids: 0 ← {1, 2}, 2 ← {3}.
      assert.match(idsSum, /\npartial result on each engine: \[6,1,5,3\]\n$/);
      if (url) await assertRedisEmpty(url);
    },
    NOTEBOOK_CASE,
  );
});

/** A new code cell. */
function codeCell(id: string, source: string) {
  return { cell_type: "code", id, metadata: {}, execution_count: null, outputs: [], source };
}

forEachBackend(BACKENDS, (test) => {
  test(
    "examples/bintree.ipynb: re-running the start cell replaces the cluster",
    async (backend: Backend) => {
      const url = backend.kind === "redis" ? backend.url : undefined;
      const mod = new URL("../mod.ts", import.meta.url).href;
      const cells = await executeNotebook("bintree", url, (notebook) => {
        const code = notebook.cells.filter((c) => c.cell_type === "code");
        const start = { ...code[0], id: "start-again" };
        start.source = joined(start.source).replace('"../mod.ts"', JSON.stringify(mod));
        return {
          ...notebook,
          cells: [
            { ...start, id: "start" },
            codeCell("keep-first", "var first = cluster;"),
            start,
            codeCell("first-after", "first;"),
            codeCell("answers", "(await rc.view().apply(() => 1)).join();"),
            code[code.length - 1],
          ],
        };
      });
      const first = resultOf(cells, "first;");
      assert.match(first, /^Cluster (dp-\w+): stopped$/);
      const namespace = first.split(/[ :]/)[1];
      const started = cells.filter((c) => c.source.startsWith("import {"))
        .map((c) => c.count);
      assert.equal(started.length, 2);
      const shown = cells.flatMap((c) => c.outputs)
        .filter((o) => o.output_type === "execute_result" && started.includes(o.execution_count!))
        .map((o) => stripAnsi(joined(o.data?.["text/plain"] as string | string[])).split("\n")[0]);
      assert.deepEqual(shown, [
        `Cluster ${namespace}: ${ENGINES} of ${ENGINES} engines up`,
        shown[1],
      ]);
      assert.match(shown[1], new RegExp(`^Cluster dp-\\w+: ${ENGINES} of ${ENGINES} engines up$`));
      assert.notEqual(shown[1].split(/[ :]/)[1], namespace);
      assert.equal(resultOf(cells, "(await rc.view()"), `"${Array(ENGINES).fill(1).join()}"`);
      if (url) await assertRedisEmpty(url);
    },
    NOTEBOOK_CASE,
  );
});

forEachBackend(BACKENDS, (test) => {
  test(
    "streamOutput in a notebook: each call's lines land in the cell that made it, even late",
    async (backend: Backend) => {
      const url = backend.kind === "redis" ? backend.url : undefined;
      const mod = JSON.stringify(new URL("../mod.ts", import.meta.url).href);
      const sleep = (ms: number) => `await new Promise((r) => setTimeout(r, ${ms}));`;
      const cells = await executeNotebook("bintree", url, (notebook) => ({
        ...notebook,
        cells: [
          codeCell(
            "start",
            `import { Cluster } from ${mod};\n` +
              `var cluster = new Cluster({ n: 2, transport: Deno.env.get("REDIS_URL") ?? ` +
              `"memory:", streamOutput: true, progress: false });\n` +
              `var rc = await cluster.startAndConnect();`,
          ),
          codeCell(
            "late",
            `var late = rc.view().apply(async () => { ${sleep(1500)} ` +
              `console.log("late line"); });\n"sent";`,
          ),
          codeCell("other", `${sleep(3000)}\n"other done";`),
          codeCell("awaited", `await rc.view(1).apply(() => console.log("awaited line"));`),
          codeCell(
            "map",
            `await rc.loadBalancedView().map((x: number) => console.log("item", x), [7]);`,
          ),
          codeCell("stop", `await late;\nawait cluster.stop();`),
        ],
      }));
      const printed = (start: string) =>
        displaysOf(cells, start).join("").split("\n").filter(Boolean).sort();
      assert.deepEqual(printed("var late"), ["[engine 0] late line", "[engine 1] late line"]);
      assert.deepEqual(printed("await rc.view(1)"), ["[engine 1] awaited line"]);
      assert.match(printed("await rc.loadBalancedView()").join(), /^\[engine [01]\] item 7$/);
      for (const other of cells.filter((c) => !c.source.startsWith("var late"))) {
        assert.doesNotMatch(JSON.stringify(other.outputs), /late line/, other.source);
      }
      if (url) await assertRedisEmpty(url);
    },
    NOTEBOOK_CASE,
  );
});

const JUPYTER_DISPLAY = Symbol.for("Jupyter.display");

/** What Deno's Jupyter kernel shows for `value`, as plain text, after checking the HTML has it. */
function display(value: unknown): string {
  const method = (value as Record<symbol, () => Record<string, string>>)[JUPYTER_DISPLAY];
  assert.equal(typeof method, "function", "no Jupyter display method");
  const bundle = method.call(value);
  const title = bundle["text/plain"].split("\n")[0];
  assert.ok(bundle["text/html"].includes(`<strong>${title}</strong>`), bundle["text/html"]);
  return bundle["text/plain"];
}

Deno.test("the rich display: cluster state, engines up, pending and done counts, timings", async () => {
  const cluster = new Cluster({ n: 2, transport: "memory:" });
  assert.equal(display(cluster), `Cluster ${cluster.namespace}: not connected`);
  const client = await cluster.startAndConnect();
  try {
    assert.match(
      display(cluster),
      /^Cluster dp-\w+: 2 of 2 engines up\n {2}engines up: 2 \(ids 0–1\)\n/,
    );
    assert.match(display(client), /^Client of dp-\w+: 2 engines up\n.*\n {2}calls pending: 0\n/);
    assert.match(
      display(client.broadcastView()),
      /^BroadcastView on 2 engines \(ids 0–1\)\n {2}fanout: 2/,
    );
    assert.match(display(client.view(1)), /^DirectView on 1 engine \(ids 1\)$/);
    assert.match(display(client.loadBalancedView()), /^LoadBalancedView on 2 engines/);

    const slow = client.view().apply(() => new Promise((resolve) => setTimeout(resolve, 50, 1)));
    assert.match(display(slow), new RegExp(`^AsyncResult ${slow.id}: 0/2 done, pending\n`));
    assert.match(display(client), /calls pending: 1\n/);
    await slow;
    const done = display(slow);
    assert.match(done, /: 2\/2 done, succeeded\n/);
    assert.match(done, /\n {2}wall time: \d+ ms\n {2}serial time: \d+ ms$/);

    const failing = client.view().apply(() => {
      throw new Error("boom");
    });
    await failing.wait();
    assert.match(display(failing), /: 2\/2 done, failed\n/);
  } finally {
    await cluster.stop();
  }
  assert.equal(display(cluster), `Cluster ${cluster.namespace}: stopped`);
  assert.equal(display(client), `Client of ${cluster.namespace}: closed`);
});
