/**
 * Test helper: a private Redis Cluster of three masters (and, if asked, one replica each) on free
 * loopback ports in a temporary directory, made with `redis-cli --cluster create`, and stopped and
 * removed with `await using`.
 *
 * @module
 */
import { freePort, hasRedisServer } from "./_redis_server.ts";

/** Options of {@linkcode startRedisCluster}. */
export interface RedisClusterOptions {
  /** Replicas per master (`--cluster-replicas`). Default 0. */
  replicas?: number;
}

/** One `redis-server --cluster-enabled yes` process of a test cluster. */
export interface ClusterNode {
  readonly port: number;
  /** Kills it with SIGKILL and waits for it to exit. */
  kill(): Promise<void>;
  /**
   * Kills it and starts it again on its port and cluster config, without its data (no
   * persistence), and waits until it sees the cluster ok.
   */
  restart(): Promise<void>;
}

/** A Redis Cluster owned by a test. */
export interface RedisCluster extends AsyncDisposable {
  /** `redis+cluster://127.0.0.1:<port>,…`, every node a seed. */
  readonly url: string;
  /** Its nodes, in the order they were given to `redis-cli --cluster create`. */
  readonly nodes: readonly ClusterNode[];
  /** Runs `redis-cli -p <port> <args…>` and returns what it printed. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** The ports of the nodes that are masters now (by `CLUSTER NODES` of a live node). */
  masters(): Promise<number[]>;
  /** The ports of the masters that hold keys of `namespace` (stored as `{namespace}:…`). */
  holders(namespace: string): Promise<number[]>;
}

const START_TIMEOUT_MS = 20_000;
const MASTERS = 3;

/** Why a Redis Cluster cannot be started here, or `undefined` when it can. */
export async function clusterUnavailable(): Promise<string | undefined> {
  if (!hasRedisServer()) return "no redis-server on PATH";
  try {
    const { code, stdout } = await new Deno.Command("redis-cli", { args: ["--version"] }).output();
    if (code !== 0) return "redis-cli does not run";
    const major = Number(/(\d+)\./.exec(new TextDecoder().decode(stdout))?.[1]);
    if (!(major >= 5)) return "redis-cli is older than 5 (no --cluster create)";
  } catch {
    return "no redis-cli on PATH";
  }
  return undefined;
}

/** Starts the cluster and waits until every node reports `cluster_state:ok`. */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const replicas = options.replicas ?? 0;
  const dir = await Deno.makeTempDir({ prefix: "deno-parallel-redis-cluster-" });
  const children: { port: number; child: Deno.ChildProcess; dead: boolean }[] = [];
  const kill = async (node: (typeof children)[number]) => {
    if (node.dead) return;
    node.dead = true;
    try {
      node.child.kill("SIGKILL");
    } catch {
      // It exited already.
    }
    await node.child.status;
  };
  const dispose = async () => {
    await Promise.all(children.map(kill));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const cli = async (port: number, ...args: string[]) => {
    const out = await new Deno.Command("redis-cli", {
      args: ["-h", "127.0.0.1", "-p", String(port), ...args],
      stdin: "null",
    }).output();
    return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  };
  try {
    for (let i = 0; i < MASTERS * (1 + replicas); i++) {
      const port = freePort();
      children.push({ port, child: spawnNode(port, dir), dead: false });
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (const { port } of children) {
      while (!(await cli(port, "PING")).includes("PONG")) {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    const created = await new Deno.Command("redis-cli", {
      args: [
        "--cluster",
        "create",
        ...children.map(({ port }) => `127.0.0.1:${port}`),
        "--cluster-replicas",
        String(replicas),
        "--cluster-yes",
      ],
      stdin: "null",
    }).output();
    if (created.code !== 0) {
      throw new Error(
        `redis-cli --cluster create failed:\n${new TextDecoder().decode(created.stdout)}`,
      );
    }
    // Settled: every node sees the cluster ok, all masters and replicas, each replica in sync.
    const settled = async (port: number) => {
      if (!(await cli(port, "CLUSTER", "INFO")).includes("cluster_state:ok")) return false;
      const flags = (await cli(port, "CLUSTER", "NODES")).split("\n").filter((l) => l !== "")
        .map((line) => line.split(" ")[2] ?? "");
      const count = (role: string) => flags.filter((f) => f.split(",").includes(role)).length;
      if (count("master") !== MASTERS || count("slave") !== MASTERS * replicas) return false;
      const info = await cli(port, "INFO", "replication");
      return !info.includes("role:slave") || info.includes("master_link_status:up");
    };
    for (const { port } of children) {
      while (!await settled(port)) {
        if (Date.now() > deadline) throw new Error(`cluster node ${port} did not settle`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  } catch (error) {
    await dispose();
    throw error;
  }
  const masters = async (): Promise<number[]> => {
    const live = children.find((node) => !node.dead);
    if (!live) return [];
    const lines = (await cli(live.port, "CLUSTER", "NODES")).split("\n");
    return lines.map((line) => line.split(" ")).filter((fields) => {
      const flags = (fields[2] ?? "").split(",");
      return flags.includes("master") && !flags.some((f) => f.startsWith("fail"));
    }).map((fields) => Number(/:(\d+)@/.exec(fields[1])?.[1])).sort((a, b) => a - b);
  };
  return {
    url: `redis+cluster://${children.map(({ port }) => `127.0.0.1:${port}`).join(",")}`,
    nodes: children.map((node) => ({
      port: node.port,
      kill: () => kill(node),
      async restart() {
        await kill(node);
        node.child = spawnNode(node.port, dir);
        node.dead = false;
        const deadline = Date.now() + START_TIMEOUT_MS;
        while (!(await cli(node.port, "CLUSTER", "INFO")).includes("cluster_state:ok")) {
          if (Date.now() > deadline) throw new Error(`node ${node.port} did not rejoin`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      },
    })),
    cli,
    masters,
    async holders(namespace) {
      const found = [];
      for (const port of await masters()) {
        if ((await cli(port, "--scan", "--pattern", `{${namespace}}:*`)).trim() !== "") {
          found.push(port);
        }
      }
      return found;
    },
    [Symbol.asyncDispose]: dispose,
  };
}

/** One cluster node on `port`, its config and files in `dir`, no persistence. */
function spawnNode(port: number, dir: string): Deno.ChildProcess {
  return new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      `nodes-${port}.conf`,
      "--cluster-node-timeout",
      "1000",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--loglevel",
      "warning",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}
