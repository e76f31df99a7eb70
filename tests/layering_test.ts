/**
 * The library's layers, read from the module graph that `deno info --json` gives for each entry
 * point (`mod.ts`, `engine.ts`, `actors/mod.ts`) and for every script a module starts by URL
 * (`new URL("….ts", import.meta.url)`: the Worker entries, and `engine.ts` for process hosts). It fails on any import cycle among the library's
 * files and on any edge a layer may not have:
 *
 * - `transport/` and `errors.ts` import nothing from `actors/`;
 * - `actors/core/` (the actor runtime) imports only itself, `transport/` and `errors.ts`;
 * - `actors/protocol/` (the wire vocabulary) imports only itself, `transport/` and `errors.ts`;
 * - `actors/host/` and `actors/client/` never import each other: the client reaches host code
 *   only as a Worker script URL, which is not an import;
 * - the shared helpers directly in `actors/` import neither `host/` nor `client/`;
 * - and the module graph of `engine.ts` (what an engine process loads) holds no `client/` file.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const ENTRY_POINTS = ["mod.ts", "engine.ts", "actors/mod.ts"];

interface Dependency {
  code?: { specifier: string };
  type?: { specifier: string };
}

interface Module {
  specifier: string;
  dependencies?: Dependency[];
}

/** Local file → the local files it imports (values and types alike). */
type Graph = Map<string, Set<string>>;

function local(specifier: string): string | undefined {
  return specifier.startsWith(ROOT.href) ? specifier.slice(ROOT.href.length) : undefined;
}

async function modulesOf(entry: string): Promise<Module[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(`deno info ${entry} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(output.stdout)).modules;
}

/** A script a module starts by URL (a Worker, or a process running `engine.ts`). */
const SCRIPT_URL = /new URL\(\s*"([^"]+\.ts)",\s*import\.meta\.url\s*\)/g;

/** The module graph of every entry point and of every script started by URL from them. */
async function libraryGraph(): Promise<Graph> {
  const graph: Graph = new Map();
  const pending = [...ENTRY_POINTS];
  const seen = new Set(pending);
  while (pending.length > 0) {
    for (const module of await modulesOf(pending.pop()!)) {
      const from = local(module.specifier);
      if (from === undefined || graph.has(from)) continue;
      const edges = new Set<string>();
      for (const dependency of module.dependencies ?? []) {
        for (const target of [dependency.code?.specifier, dependency.type?.specifier]) {
          const to = target === undefined ? undefined : local(target);
          if (to !== undefined) edges.add(to);
        }
      }
      graph.set(from, edges);
      const source = await Deno.readTextFile(new URL(from, ROOT));
      for (const [, relative] of source.matchAll(SCRIPT_URL)) {
        const script = local(new URL(relative, new URL(from, ROOT)).href)!;
        if (!seen.has(script)) {
          seen.add(script);
          pending.push(script);
        }
      }
    }
  }
  return graph;
}

/** The strongly connected components with more than one file, or with a self-import (Tarjan). */
function cycles(graph: Graph): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || graph.get(node)?.has(node)) found.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return found;
}

type Layer = "transport" | "errors" | "core" | "protocol" | "host" | "client" | "shared" | "top";

function layerOf(path: string): Layer {
  if (path.startsWith("transport/")) return "transport";
  if (path === "errors.ts") return "errors";
  for (const layer of ["core", "protocol", "host", "client"] as const) {
    if (path.startsWith(`actors/${layer}/`)) return layer;
  }
  if (path.startsWith("actors/")) return "shared";
  return "top";
}

/** What each layer may import; a layer absent here may import anything. */
const ALLOWED: Partial<Record<Layer, readonly Layer[]>> = {
  transport: ["transport", "errors", "top"],
  errors: ["errors"],
  core: ["core", "transport", "errors", "top"],
  protocol: ["protocol", "transport", "errors", "top"],
  host: ["host", "core", "protocol", "shared", "transport", "errors", "top"],
  client: ["client", "core", "protocol", "shared", "transport", "errors", "top"],
  shared: ["shared", "core", "protocol", "transport", "errors", "top"],
};

/** Only `deps.ts` and `deps_redis.ts` may be imported among the top-level files. */
function forbiddenEdges(graph: Graph): string[] {
  const found: string[] = [];
  for (const [from, targets] of graph) {
    const allowed = ALLOWED[layerOf(from)];
    if (allowed === undefined) continue;
    for (const to of targets) {
      const layer = layerOf(to);
      const ok = allowed.includes(layer) && (layer !== "top" || to.startsWith("deps"));
      if (!ok) found.push(`${from} → ${to}`);
    }
  }
  return found.sort();
}

const graph = await libraryGraph();

Deno.test("the module graph of the entry points and Worker scripts reaches every layer", () => {
  const files = ["mod.ts", "engine.ts", "actors/mod.ts", "errors.ts"];
  const workers = ["_worker_host.ts", "_heartbeat_worker.ts"];
  for (const file of [...files, ...workers.map((worker) => `actors/host/${worker}`)]) {
    assert.ok(graph.has(file), `${file} is in the graph`);
  }
  for (const layer of ["core", "protocol", "host", "client", "transport"] as const) {
    assert.ok([...graph.keys()].some((file) => layerOf(file) === layer), `${layer} is reached`);
  }
});

Deno.test("an engine process (engine.ts) loads no client code", async () => {
  const loaded = (await modulesOf("engine.ts")).map((m) => local(m.specifier)).filter(Boolean);
  assert.deepEqual(loaded.filter((file) => layerOf(file!) === "client"), []);
});

Deno.test("the library's files import each other without a cycle", () => {
  assert.deepEqual(cycles(graph), [], "import cycles (each list is one strongly connected set)");
});

Deno.test("no file imports from a layer it may not depend on", () => {
  assert.deepEqual(forbiddenEdges(graph), []);
});
