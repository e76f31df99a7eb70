/**
 * The one backend loop of the shared suites, as deno-redis loops its command suites over
 * connections: a suite is a function that registers cases, and {@linkcode forEachBackend} registers
 * each case once per variant (the embedded transport; Redis with one launcher or another).
 *
 * Each case is one `Deno.test`, named `"<variant>: <title>"`, that owns its backend: on Redis a
 * `redis-server` of its own, started in the test and stopped when it ends (`await using`), or the
 * server named by `REDIS_URL` when no server binary is installed. So `--filter` and `--parallel`
 * work, and no test exists only to stop a server.
 *
 * @module
 */
import {
  hasRedisServer,
  redisAvailable,
  type RedisServer,
  type RedisServerOptions,
  startRedisServer,
  testRedisUrl,
} from "./_redis_server.ts";
import { within } from "./_async.ts";
import { createTransport, MemoryTransport, type Transport } from "../mod.ts";

/** Where a suite's messages go: the embedded transport or a Redis. */
export type BackendKind = "memory" | "redis";

/** One test's transport. */
export interface Backend extends AsyncDisposable {
  /** Which transport it is. */
  readonly kind: BackendKind;
  /** The URL to hand to `Cluster` or `createTransport`: `"memory:"` or `redis://…`. */
  readonly url: string;
  /** The test's own `redis-server`; absent on memory and with `REDIS_URL`. */
  readonly server: RedisServer | undefined;
  /** The variant's `ClusterOptions`: `transport` (the URL) and the `launcher`, if it names one. */
  readonly cluster: { transport: string; launcher?: Launcher };
}

/** How a variant starts its engine hosts (see `ClusterOptions.launcher`). */
export type Launcher = "worker" | "process";

/** One way to run a suite: its name in test names, its backend, and what the suite adds. */
export interface Variant {
  /** Prefix of the test names, e.g. `"redis/process"`. */
  readonly name: string;
  /** The transport its tests open. */
  readonly kind: BackendKind;
  /** The launcher of its clusters; the `Cluster` default when absent. */
  readonly launcher?: Launcher;
}

/** Options of one case. */
export interface CaseOptions {
  /** Deadline of the whole case, a hang guard (not an assertion about speed). */
  timeoutMs?: number;
  /** Options of the case's own `redis-server`. */
  redis?: RedisServerOptions;
  /** Skip the case on this variant. */
  ignore?: boolean;
  /** `false` turns the op, resource and exit sanitizers off (default `true`). */
  sanitize?: boolean;
}

/** Registers one case of a suite. */
export type Case = (
  title: string,
  fn: (backend: Backend) => Promise<void>,
  options?: CaseOptions,
) => void;

/** The usual two variants: the embedded transport and Redis. */
export const BACKENDS: readonly Variant[] = [
  { name: "memory", kind: "memory" },
  { name: "redis", kind: "redis" },
];

/** The embedded transport with Worker hosts, and Redis with Worker and with process hosts. */
export const LAUNCHERS: readonly Variant[] = [
  { name: "memory/worker", kind: "memory", launcher: "worker" },
  { name: "redis/worker", kind: "redis", launcher: "worker" },
  { name: "redis/process", kind: "redis", launcher: "process" },
];

const NO_REDIS = "no redis-server on PATH and no REDIS_URL";
let warned = false;

/** Why tests on `kind` cannot run here, or `undefined` when they can. */
export function unavailable(kind: BackendKind): string | undefined {
  if (kind === "memory" || redisAvailable()) return undefined;
  if (!warned) {
    warned = true;
    // deno-lint-ignore no-console
    console.warn(`Redis tests ignored: ${NO_REDIS}`);
  }
  return NO_REDIS;
}

/** Opens a backend of `kind` for one test; `await using` stops its server. */
export async function openBackend(
  kind: BackendKind,
  options: RedisServerOptions = {},
  launcher?: Launcher,
): Promise<Backend> {
  const of = (url: string, server?: RedisServer): Backend => ({
    kind,
    url,
    server,
    cluster: launcher ? { transport: url, launcher } : { transport: url },
    [Symbol.asyncDispose]: async () => await server?.[Symbol.asyncDispose](),
  });
  if (kind === "memory") return of("memory:");
  if (!hasRedisServer()) {
    const url = testRedisUrl();
    if (url === undefined) throw new Error(NO_REDIS);
    return of(url);
  }
  const args = ["--loglevel", "warning", ...options.args ?? []];
  const server = await startRedisServer({ ...options, args });
  return of(server.url, server);
}

/**
 * Runs `suite` once per variant. `suite` registers its cases through `test`; each becomes a
 * `Deno.test` (every sanitizer on unless `sanitize: false`) that opens its backend, runs under a
 * `timeoutMs` hang guard (default 60 s) and closes it.
 */
export function forEachBackend<V extends Variant>(
  variants: readonly V[],
  suite: (test: Case, variant: V) => void,
  defaults: CaseOptions = {},
): void {
  for (const variant of variants) {
    suite((title, fn, options = {}) => {
      register(`${variant.name}: ${title}`, variant, fn, { ...defaults, ...options });
    }, variant);
  }
}

/**
 * One `Deno.test` that needs Redis by nature (it kills the server, reads its keys, writes as an
 * attacker would): it gets a Redis of its own, as a case of {@linkcode forEachBackend} does, and
 * is ignored where there is none.
 */
export function redisTest(
  name: string,
  fn: (redis: Backend) => Promise<void>,
  options: CaseOptions = {},
): void {
  register(name, { name: "redis", kind: "redis" }, fn, options);
}

function register(
  name: string,
  variant: Variant,
  fn: (backend: Backend) => Promise<void>,
  options: CaseOptions,
): void {
  const { timeoutMs = 60_000, redis, ignore = false, sanitize = true } = options;
  Deno.test({
    name,
    ignore: unavailable(variant.kind) !== undefined || ignore,
    sanitizeOps: sanitize,
    sanitizeResources: sanitize,
    sanitizeExit: sanitize,
    async fn() {
      await using backend = await openBackend(variant.kind, redis, variant.launcher);
      await within(fn(backend), timeoutMs, name);
    },
  });
}

/**
 * Transport handles on one backend's streams, one per actor system as one per process. Disposing
 * closes them, the first last (on memory it owns the streams), and on a shared `REDIS_URL`
 * first deletes what the test wrote under `namespace`.
 */
export interface Store extends AsyncDisposable {
  /** A new handle on the store. */
  transport(): Promise<Transport>;
}

/** A {@linkcode Store} on `backend` for a test whose keys start with `namespace`. */
export function storeOn(backend: Backend, namespace: string): Store {
  const handles: Transport[] = [];
  return {
    async transport() {
      const first = handles[0];
      const t = backend.kind === "memory"
        ? (first ? new MemoryTransport(first as MemoryTransport) : new MemoryTransport())
        : await createTransport(backend.url);
      handles.push(t);
      return t;
    },
    async [Symbol.asyncDispose]() {
      const shared = backend.kind === "redis" && !backend.server;
      if (shared && handles[0]) await handles[0].deletePrefix(`${namespace}:`);
      for (const t of handles.reverse()) await t.close();
    },
  };
}
