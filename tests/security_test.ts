/**
 * Security (issue 6, item 6): Redis ACL users and passwords, TLS (`rediss://` with a throwaway
 * CA), key files, secrets kept out of every output and error, and engines with restricted Deno
 * permissions. Each test starts its own `redis-server`.
 *
 * Run as a script (`deno run -A tests/security_test.ts <mode> …`), this file is the child
 * process of two tests: one that captures everything a cluster prints, one that needs
 * `--unstable-worker-options`.
 */
import assert from "node:assert/strict";
import { Cluster } from "../actors/client/cluster.ts";
import { readKeyFile, toHex, writeKeyFile } from "../transport/key.ts";
import { RemoteError, TransportClosedError } from "../errors.ts";
import { createTransport } from "../transport/mod.ts";
import { freePort, hasRedisServer, startRedisServer } from "./_redis_server.ts";
import { within } from "./_async.ts";

// Names that exist in the engines' namespaces, not here.
declare const id: number;
declare const rank: number;
declare const part: number[];

const PASSWORD = "s3cret-Pa55word";
const ACL_ARGS = [
  "--loglevel",
  "warning",
  "--user",
  "default",
  "off",
  "--user",
  "alice",
  "on",
  `>${PASSWORD}`,
  "~*",
  "&*",
  "+@all",
];
const T = { timeout: 15_000 } as const;
const TEST = { sanitizeOps: true, sanitizeResources: true } as const;

/** Everything an error shows: `String()`, stack, and the same for its causes. */
function everything(error: unknown): string {
  const parts: string[] = [];
  for (let e = error, depth = 0; e !== undefined && depth < 10; depth++) {
    parts.push(String(e));
    if (!(e instanceof Error)) break;
    parts.push(e.stack ?? "");
    if (e instanceof AggregateError) parts.push(...e.errors.map(everything));
    e = e.cause;
  }
  return parts.join("\n");
}

/** Runs `deno` with `args` and returns its exit code and its stdout plus stderr. */
async function runDeno(args: string[], ms = 60_000): Promise<{ code: number; output: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const output = Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()])
    .then(([out, err]) => out + err);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const exited = await Promise.race([
    child.status.then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  if (!exited) child.kill("SIGKILL");
  const { code } = await child.status;
  const text = await output;
  if (!exited) throw new Error(`Timed out after ${ms} ms: deno ${args.join(" ")}\n${text}`);
  return { code, output: text };
}

/** Runs apply, scatter/pull and a broadcast on a 2-engine cluster, and stops it. */
async function exercise(options: ConstructorParameters<typeof Cluster>[0]): Promise<void> {
  await using cluster = new Cluster({ engineTimeout: 20_000, progress: false, ...options, n: 2 });
  const client = await within(cluster.startAndConnect(), 30_000, "start the cluster");
  assert.deepEqual(await client.view().apply(() => id * 10).get(T), [0, 10]);
  await client.view().scatter("part", [1, 2, 3, 4], T);
  assert.deepEqual(await client.view().apply(() => part).get(T), [[1, 2], [3, 4]]);
  assert.deepEqual(await client.broadcastView().apply(() => rank + 1).get(T), [1, 2]);
}

/** A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with openssl. */
async function makeCertificates(dir: string): Promise<void> {
  const openssl = async (...args: string[]) => {
    const { code, stderr } = await new Deno.Command("openssl", { args, cwd: dir }).output();
    if (code !== 0) {
      throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
    }
  };
  await Deno.writeTextFile(`${dir}/san.ext`, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  const days = ["-days", "2"];
  await openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-subj",
    "/CN=deno-parallel test CA",
    ...days,
  );
  await openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=localhost",
  );
  await openssl(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-extfile",
    "san.ext",
    ...days,
  );
}

/** Why TLS cannot be tested here, if it cannot: no openssl, or a redis-server built without it. */
async function tlsUnavailable(): Promise<string | undefined> {
  try {
    if (!(await new Deno.Command("openssl", { args: ["version"] }).output()).success) {
      return "openssl does not run";
    }
  } catch {
    return "no openssl on PATH";
  }
  const missing = "/nonexistent/deno-parallel.pem";
  const { stdout, stderr } = await new Deno.Command("redis-server", {
    args: [
      "--port",
      "0",
      "--tls-port",
      String(freePort()),
      "--tls-cert-file",
      missing,
      "--tls-key-file",
      missing,
      "--tls-ca-cert-file",
      missing,
    ],
  }).output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  // A server with TLS fails on the missing file; one without rejects the directive.
  return text.includes(missing) ? undefined : "redis-server is built without TLS";
}

/**
 * The child process of the secrets test: runs a cluster over `url` (a password URL) with
 * `streamOutput` and prints every error it meets (wrong password, unreachable server, a failing
 * task), whole, on stdout.
 */
async function leakScenario(url: string, keyFile: string, launcher: "worker" | "process") {
  const wrong = url.replace(PASSWORD, "not-the-password");
  const unreachable = `redis://alice:${PASSWORD}@127.0.0.1:${freePort()}`;
  const show = (what: string, error: unknown) => {
    // deno-lint-ignore no-console
    console.log(`--- ${what}\n${everything(error)}`);
  };
  {
    await using cluster = new Cluster({
      n: 2,
      transport: url,
      keyFile,
      launcher,
      streamOutput: true,
      progress: false,
    });
    const client = await cluster.startAndConnect();
    // deno-lint-ignore no-console
    await client.view().apply(() => console.log("hello from", id)).get(T);
    try {
      await client.view().apply(() => {
        throw new Error("task failed");
      }).get(T);
    } catch (error) {
      show("failing task", error);
    }
  }
  const cases = [["wrong password", wrong]];
  // Launcher-independent and slow (the connect deadline): once.
  if (launcher === "worker") cases.push(["unreachable", unreachable]);
  for (const [what, bad] of cases) {
    try {
      await using cluster = new Cluster({
        n: 1,
        transport: bad,
        keyFile,
        launcher,
        progress: false,
      });
      await cluster.startAndConnect();
    } catch (error) {
      show(what, error);
    }
  }
  // deno-lint-ignore no-console
  console.log("--- done");
}

/** The child process of the worker permissions test: prints what the two reads gave. */
async function workerPermissionsScenario(allowed: string, denied: string) {
  await using cluster = new Cluster({
    n: 1,
    transport: "memory:",
    permissions: { read: [allowed] },
    progress: false,
  });
  const client = await cluster.startAndConnect();
  const read = (path: string) => Deno.readTextFile(path);
  const inside = await client.view().apply(read, `${allowed}/inside.txt`).get(T);
  let outside: unknown;
  try {
    outside = await client.view().apply(read, denied).get(T);
  } catch (error) {
    outside = error instanceof RemoteError ? { remoteName: error.remoteName } : String(error);
  }
  // deno-lint-ignore no-console
  console.log(JSON.stringify({ inside, outside }));
}

const tlsReason = import.meta.main || !hasRedisServer() ? undefined : await tlsUnavailable();

if (import.meta.main) {
  const [mode, ...args] = Deno.args;
  if (mode === "leak") await leakScenario(args[0], args[1], args[2] as "worker" | "process");
  else if (mode === "worker-permissions") await workerPermissionsScenario(args[0], args[1]);
  else throw new TypeError(`Unknown mode "${mode}"`);
} else {
  registerTests();
}

function registerTests(): void {
  const noRedis = hasRedisServer() ? undefined : "no redis-server on PATH";
  const noTls = noRedis ?? tlsReason;
  for (const [what, reason] of [["Redis tests", noRedis], ["TLS test", noTls]]) {
    // deno-lint-ignore no-console
    if (reason) console.warn(`security_test: ${what} ignored: ${reason}`);
  }

  Deno.test({
    name: "Cluster runs apply, scatter and broadcasts as a Redis ACL user (worker and process)",
    ignore: noRedis !== undefined,
    ...TEST,
    async fn() {
      await using server = await startRedisServer({ args: ACL_ARGS });
      const url = `redis://alice:${PASSWORD}@127.0.0.1:${server.port}`;
      await exercise({ transport: url, launcher: "worker" });
      await exercise({ transport: url, launcher: "process" });
    },
  });

  Deno.test({
    name: "createTransport() rejects a wrong password with TransportClosedError that hides it",
    ignore: noRedis !== undefined,
    ...TEST,
    async fn() {
      await using server = await startRedisServer({ args: ACL_ARGS });
      const wrong = `redis://alice:${PASSWORD}x@127.0.0.1:${server.port}`;
      const error = await within(
        createTransport(wrong).then(() => undefined, (e) => e),
        15_000,
        "a wrong password",
      );
      assert.ok(error instanceof TransportClosedError, String(error));
      assert.match(error.message, /WRONGPASS/);
      assert.match(error.message, /alice:\*\*\*@/);
      assert.ok(!everything(error).includes(PASSWORD), everything(error));
    },
  });

  Deno.test({
    name: "Cluster runs over rediss:// with the CA given as ?ca= (worker and process)",
    ignore: noTls !== undefined,
    ...TEST,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "deno-parallel-tls-" });
      try {
        await makeCertificates(dir);
        const tlsPort = freePort();
        await using _server = await startRedisServer({
          args: [
            "--loglevel",
            "warning",
            "--tls-port",
            String(tlsPort),
            "--tls-cert-file",
            `${dir}/server.pem`,
            "--tls-key-file",
            `${dir}/server.key`,
            "--tls-ca-cert-file",
            `${dir}/ca.pem`,
            "--tls-auth-clients",
            "no",
          ],
        });
        const url = `rediss://127.0.0.1:${tlsPort}?ca=${encodeURIComponent(`${dir}/ca.pem`)}`;
        await exercise({ transport: url, launcher: "worker" });
        await exercise({ transport: url, launcher: "process" });
        // Without the CA, the self-signed chain is refused.
        const untrusted = await within(
          createTransport(`rediss://127.0.0.1:${tlsPort}`).then(() => undefined, (e) => e),
          15_000,
          "an untrusted certificate",
        );
        assert.ok(untrusted instanceof TransportClosedError, String(untrusted));
        assert.match(untrusted.message, /certificate/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });

  Deno.test({
    name: "writeKeyFile() writes a 0600 key file that Cluster and readKeyFile() read",
    ...TEST,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "deno-parallel-key-" });
      try {
        const path = `${dir}/cluster.key`;
        const key = await writeKeyFile(path);
        if (Deno.build.os !== "windows") {
          assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
        }
        assert.deepEqual(await readKeyFile(path), key);
        await using cluster = new Cluster({ n: 1, keyFile: path, progress: false });
        const client = await within(cluster.startAndConnect(), 30_000, "start the cluster");
        assert.deepEqual(await client.view().apply(() => id).get(T), [0]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });

  Deno.test({
    name: "Cluster, its errors, streamOutput and engine.ts never show the password or the key",
    ignore: noRedis !== undefined,
    ...TEST,
    async fn() {
      await using server = await startRedisServer({ args: ACL_ARGS });
      const dir = await Deno.makeTempDir({ prefix: "deno-parallel-leak-" });
      try {
        const keyFile = `${dir}/cluster.key`;
        const keyHex = toHex(await writeKeyFile(keyFile));
        const url = `redis://alice:${PASSWORD}@127.0.0.1:${server.port}`;
        const self = new URL(import.meta.url).pathname;
        const check = (what: string, output: string) => {
          assert.ok(!output.includes(PASSWORD), `${what} shows the password:\n${output}`);
          assert.ok(!output.includes(keyHex), `${what} shows the key:\n${output}`);
        };
        for (const launcher of ["worker", "process"]) {
          const { code, output } = await runDeno([
            "run",
            "-A",
            self,
            "leak",
            url,
            keyFile,
            launcher,
          ]);
          assert.equal(code, 0, output);
          // The scenario ran: output streamed, each error met.
          const expected = ["[engine 1] hello from 1", "task failed", "WRONGPASS"];
          if (launcher === "worker") expected.push("ECONNREFUSED");
          for (const text of expected) {
            assert.ok(output.includes(text), `no "${text}" in:\n${output}`);
          }
          assert.ok(output.includes("--- done"), output);
          check(`the ${launcher} scenario`, output);
        }
        // The engine CLI, with a wrong password: it fails and says why.
        const wrong = url.replace(PASSWORD, `${PASSWORD}-wrong`);
        const engine = new URL("../engine.ts", import.meta.url).pathname;
        const cli = await runDeno(
          ["run", "-A", engine, "--redis", wrong, "--cluster", "c", "--key-file", keyFile],
          30_000,
        );
        assert.notEqual(cli.code, 0, cli.output);
        assert.match(cli.output, /WRONGPASS/);
        check("engine.ts", cli.output);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });

  Deno.test({
    name: "Cluster permissions: a process engine reads inside its paths, gets RemoteError outside",
    ignore: noRedis !== undefined,
    ...TEST,
    async fn() {
      await using server = await startRedisServer({ args: ["--loglevel", "warning"] });
      const allowed = await Deno.makeTempDir({ prefix: "deno-parallel-allowed-" });
      const denied = await Deno.makeTempFile({ prefix: "deno-parallel-denied-" });
      try {
        await Deno.writeTextFile(`${allowed}/inside.txt`, "inside");
        await Deno.writeTextFile(denied, "outside");
        await using cluster = new Cluster({
          n: 1,
          transport: server.url,
          launcher: "process",
          permissions: { read: [allowed] },
          engineTimeout: 20_000,
          progress: false,
        });
        const client = await within(cluster.startAndConnect(), 30_000, "start the cluster");
        const read = (path: string) => Deno.readTextFile(path);
        assert.deepEqual(await client.view().apply(read, `${allowed}/inside.txt`).get(T), [
          "inside",
        ]);
        const error = await client.view().apply(read, denied).get(T).catch((e) => e);
        assert.ok(error instanceof RemoteError, String(error));
        assert.equal(error.remoteName, "NotCapable");
        assert.ok(!String(error).includes("outside"));
      } finally {
        await Deno.remove(allowed, { recursive: true });
        await Deno.remove(denied);
      }
    },
  });

  Deno.test({
    name: "Cluster permissions: a worker engine reads inside its paths, gets RemoteError outside",
    ...TEST,
    async fn() {
      const allowed = await Deno.makeTempDir({ prefix: "deno-parallel-allowed-" });
      const denied = await Deno.makeTempFile({ prefix: "deno-parallel-denied-" });
      try {
        await Deno.writeTextFile(`${allowed}/inside.txt`, "inside");
        await Deno.writeTextFile(denied, "outside");
        // Worker permissions are unstable in Deno 2: the child runs with the flag.
        const self = new URL(import.meta.url).pathname;
        const { code, output } = await runDeno(
          ["run", "-A", "--unstable-worker-options", self, "worker-permissions", allowed, denied],
        );
        assert.equal(code, 0, output);
        assert.deepEqual(JSON.parse(output.trim().split("\n").at(-1)!), {
          inside: ["inside"],
          outside: { remoteName: "NotCapable" },
        });
      } finally {
        await Deno.remove(allowed, { recursive: true });
        await Deno.remove(denied);
      }
    },
  });
}
