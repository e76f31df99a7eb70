/**
 * The Redis transport's link to its server: two node-redis connections that reconnect with capped
 * exponential backoff, and how every call runs over them (waiting for the server, per-call
 * deadlines, retries after a lost connection, turns on the blocking connection).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createClient, RESP_TYPES } from "../deps_redis.ts";
import { TransportClosedError, TransportRefusedError } from "../errors.ts";
import { isProtocolError, isServerReply, isTlsRefusal, isTransient } from "./_redis_reply.ts";
import { redactUrl, safeDecode } from "./_url.ts";

const RETRY_PAUSE_MS = 20;
/** The shortest pause between reconnect attempts, doubled on each until {@linkcode MAX_BACKOFF_MS}. */
export const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2000;

/** One argument of a Redis command. */
export type Arg = string | Buffer;
type Client = ReturnType<typeof newClient>;

/** What a {@linkcode Connection} asks of its link. */
interface ConnectionHooks {
  closed(): boolean;
  /** Until when a first connection may be attempted. */
  connectDeadline(): number;
  onReady(): void;
  onError(error: unknown): void;
}

function newClient(
  url: string,
  ca: string | undefined,
  connectTimeoutMs: number,
  reconnectStrategy: (retries: number, cause: Error) => number | false,
) {
  return createClient({
    url,
    disableClientInfo: true,
    commandOptions: { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } },
    socket: {
      connectTimeout: Math.min(connectTimeoutMs, 5000),
      reconnectStrategy,
      ...(ca === undefined ? {} : { ca }),
    },
  });
}

/** One node-redis client, reconnecting with capped exponential backoff. */
class Connection {
  readonly client: Client;
  #connected = false;
  #closing = false;
  /** Ends when node-redis' backoff sleep does: it cannot be cancelled, only waited for. */
  #backoff: { done: Promise<void>; end: () => void } | undefined;

  constructor(
    url: string,
    ca: string | undefined,
    connectTimeoutMs: number,
    hooks: ConnectionHooks,
  ) {
    this.client = newClient(url, ca, connectTimeoutMs, (retries, cause) => {
      const delay = this.#reconnectDelay(retries, cause, hooks);
      if (delay !== false && !this.#backoff) {
        let end!: () => void;
        const done = new Promise<void>((resolve) => end = resolve);
        this.#backoff = { done, end };
      }
      return delay;
    });
    this.client.on("error", hooks.onError);
    // node-redis emits "reconnecting" after each delay the strategy returned.
    this.client.on("reconnecting", () => {
      this.#backoff?.end();
      this.#backoff = undefined;
    });
    // A connection that drops is opened again at once; closed meanwhile, node-redis still
    // finishes that socket and leaves it open (it cannot destroy a client it counts as closed).
    // Such a socket must neither keep the process alive nor stay open.
    this.client.on("connect", () => {
      if (this.#closing) this.client.unref();
    });
    this.client.on("ready", () => {
      if (this.#closing) {
        this.#dropLateSocket();
        return;
      }
      this.#connected = true;
      hooks.onReady();
    });
  }

  #dropLateSocket(): void {
    const socket = this.client._ejectSocket();
    socket.on("error", () => {});
    socket.destroySocket();
  }

  #reconnectDelay(retries: number, cause: Error, hooks: ConnectionHooks): number | false {
    if (hooks.closed()) return false;
    const delay = Math.min(MIN_BACKOFF_MS * 2 ** retries, MAX_BACKOFF_MS);
    if (this.#connected) return delay;
    // Not connected yet: give up on a refusal (a wrong password, an untrusted certificate) or
    // once time is up.
    const left = hooks.connectDeadline() - Date.now();
    if (left <= 0 || (isServerReply(cause) && !isTransient(cause)) || isTlsRefusal(cause)) {
      return false;
    }
    return Math.min(delay, left);
  }

  get ready(): boolean {
    return this.client.isReady;
  }

  /** Drops the connection and fails its commands; resolves once node-redis' timers are done. */
  async close(): Promise<void> {
    this.#closing = true;
    this.client.unref();
    if (this.client.isOpen) this.client.destroy();
    await this.#backoff?.done;
  }
}

/** Thrown inside the transport when a call's deadline passes; public methods translate it. */
export class DeadlinePassed extends Error {}

/** Set by a call whose deadline passed, for the work it left running. */
export interface Abandon {
  abandoned: boolean;
}

/** What a {@linkcode RedisLink} asks of its transport. */
export interface LinkHooks {
  /** A connection came back after it was lost: the server may have lost its data meanwhile. */
  onReconnect(): void;
  /** Whether calls are to wait, though the connections are up (the server's data is checked). */
  held(): boolean;
  /** The command connection was replaced (after a protocol error): its settings may differ. */
  onNewCommandConnection(): void;
}

/** Options of a {@linkcode RedisLink}, checked by the transport. */
export interface LinkOptions {
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** The contents of the PEM file of the CAs to trust, for `rediss://`. */
  ca?: string;
}

/**
 * A command connection and a blocking connection to one server, and the machinery every call of
 * the transport goes through.
 */
export class RedisLink {
  /** The server's URL, with any password replaced by `***`. */
  readonly url: string;
  readonly commandTimeoutMs: number;
  #secrets: string[];
  #connectDeadline = 0;
  #cmd: Connection;
  /** Makes a new command connection, to replace one whose replies may no longer match. */
  #newCommandConnection: () => Connection;
  /** Closes of command connections replaced by {@linkcode #resetCommandConnection}. */
  #retired = new Set<Promise<void>>();
  #blocker: Connection;
  #hooks: LinkHooks;
  #closed = false;
  #lastError: unknown;
  /** When calls started failing to reach the server, while they still do. */
  #silentSince: number | undefined;
  /** Grows on every reconnect: the consumers' pending entries are to be re-read. */
  #reconnects = 0;
  #readyCount = 0;
  /** Calls waiting for a connection to come back; each checks whether it has. */
  #waiters = new Set<() => void>();
  #turn: Promise<void> = Promise.resolve();

  constructor(url: string, options: LinkOptions, hooks: LinkHooks) {
    this.url = redactUrl(url);
    this.commandTimeoutMs = options.commandTimeoutMs;
    this.#hooks = hooks;
    const parsed = new URL(url);
    // node-redis has no use for the query, and puts the URL it is given in some of its errors.
    parsed.search = "";
    this.#secrets = [parsed.password, safeDecode(parsed.password)].filter((s) => s !== "");
    const connectionHooks: ConnectionHooks = {
      closed: () => this.#closed,
      connectDeadline: () => this.#connectDeadline,
      onReady: () => this.#onReady(),
      onError: (error) => this.#lastError = error,
    };
    const { ca, connectTimeoutMs } = options;
    this.#newCommandConnection = () =>
      new Connection(parsed.href, ca, connectTimeoutMs, connectionHooks);
    this.#cmd = this.#newCommandConnection();
    this.#blocker = new Connection(parsed.href, ca, connectTimeoutMs, connectionHooks);
  }

  /** Whether {@linkcode close} was called (or the first connect failed). */
  get closed(): boolean {
    return this.#closed;
  }

  /** How many times a connection came back after it was lost. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** How long calls have failed to reach the server, in ms; 0 while they do reach it. */
  get silentMs(): number {
    return Date.now() - (this.#silentSince ?? Date.now());
  }

  /** Records an error of a call made outside {@linkcode attempt}, for the next timeout's cause. */
  noteError(error: unknown): void {
    this.#lastError = error;
  }

  /** Wakes the calls waiting for the server, to look again (the transport stopped holding them). */
  wake(): void {
    for (const check of this.#waiters) check();
  }

  /**
   * Opens both connections and runs `ready` (the transport's first reads) within `timeoutMs`;
   * rejects with {@linkcode TransportClosedError} otherwise, the link closed.
   */
  async connect(timeoutMs: number, ready: () => Promise<unknown>): Promise<void> {
    this.#connectDeadline = Date.now() + timeoutMs;
    const connecting = Promise.all([this.#cmd.client.connect(), this.#blocker.client.connect()]);
    connecting.catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Backstop for a server that accepts connections and never answers.
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlinePassed("No answer")), timeoutMs + 1000);
    });
    try {
      await Promise.race([connecting.then(ready), late]);
    } catch (error) {
      this.#closed = true;
      await this.#closeConnections();
      const reason = error instanceof DeadlinePassed
        ? `no answer within ${timeoutMs} ms`
        : this.#scrub(error instanceof Error ? error.message : String(error));
      throw new TransportClosedError(`Cannot connect to ${this.url}: ${reason}`, {
        cause: this.#scrubError(
          error instanceof DeadlinePassed ? this.#lastError : error,
          "connect",
        ),
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends one command on the command connection. */
  send(args: Arg[], options?: { chainId?: symbol; asap?: boolean }): Promise<unknown> {
    return this.#cmd.client.sendCommand<unknown>(args, options);
  }

  /** Sends one command on the blocking connection (`blocking`), or on the command connection. */
  sendOn(blocking: boolean, args: Arg[]): Promise<unknown> {
    return (blocking ? this.#blocker : this.#cmd).client.sendCommand<unknown>(args);
  }

  /** `MULTI` … `EXEC` in one round trip, decoded binary-safe (node-redis' `multi()` is not). */
  async transaction(commands: Arg[][]): Promise<unknown[]> {
    const chainId = Symbol("transaction");
    const replies = await Promise.all([
      this.send(["MULTI"], { chainId }),
      ...commands.map((args) => this.send(args, { chainId })),
      this.send(["EXEC"], { chainId }),
    ]);
    const results = replies[replies.length - 1] as unknown[];
    const failed = results.find((r) => r instanceof Error);
    if (failed) throw failed;
    return results;
  }

  /** Closes both connections at once; calls in flight and later calls reject. */
  async close(): Promise<void> {
    this.#closed = true;
    this.wake();
    await this.#closeConnections();
  }

  async #closeConnections(): Promise<void> {
    await Promise.all([this.#cmd.close(), this.#blocker.close(), ...this.#retired]);
  }

  #onReady(): void {
    // The first two connections make reconnect 0; any later one is a reconnect.
    if (++this.#readyCount > 2) {
      this.#reconnects++;
      this.#hooks.onReconnect();
    }
    this.wake();
  }

  /**
   * Replaces the command connection after a protocol error: the server drops such a connection,
   * and node-redis could match later replies to the wrong commands. Calls in flight on the old one
   * fail as if disconnected, and are sent again on the new one once it is up.
   */
  #resetCommandConnection(): void {
    const old = this.#cmd;
    this.#cmd = this.#newCommandConnection();
    const retired = old.close().catch(() => {}).finally(() => this.#retired.delete(retired));
    this.#retired.add(retired);
    this.#cmd.client.connect().catch((error) => this.#lastError = error);
    this.#hooks.onNewCommandConnection();
  }

  /** Whether the connections a call uses are up and the transport does not hold calls. */
  #up(blocking: boolean): boolean {
    return this.#closed ||
      (this.#cmd.ready && (!blocking || this.#blocker.ready) && !this.#hooks.held());
  }

  /** Throws {@linkcode TransportClosedError} once the link is closed. */
  checkOpen(what: string): void {
    if (this.#closed) throw new TransportClosedError(`Cannot ${what}: the transport is closed`);
  }

  /**
   * The error of a call the server refused with `reply`: its text, without node-redis' class or
   * stack (nor any password it may show).
   */
  #refused(what: string, keys: readonly string[], reply: Error): TransportRefusedError {
    return new TransportRefusedError(
      what,
      keys,
      this.#scrub(reply.message),
      new URL(this.url).host,
    );
  }

  /** The error of a call that found no server for `commandTimeoutMs`. */
  unreachable(what: string): TransportClosedError {
    return new TransportClosedError(
      `Cannot ${what}: no answer from ${this.url} for ${this.commandTimeoutMs} ms`,
      { cause: this.#scrubError(this.#lastError, what) },
    );
  }

  #scrub(message: string): string {
    return this.#secrets.reduce((m, secret) => m.replaceAll(secret, "***"), message);
  }

  /**
   * `error` fit to be the cause of an error of `what`: a server's reply as a
   * {@linkcode TransportRefusedError}, another error as it is, or a copy without the password
   * when its message or stack shows it.
   */
  #scrubError(error: unknown, what: string): unknown {
    if (isServerReply(error)) return this.#refused(what, [], error);
    if (!(error instanceof Error)) {
      return typeof error === "string" ? this.#scrub(error) : error;
    }
    const shown = `${error.message}\n${error.stack ?? ""}`;
    if (this.#scrub(shown) === shown) return error;
    const copy = new Error(this.#scrub(error.message));
    copy.name = error.name;
    copy.stack = this.#scrub(error.stack ?? "");
    return copy;
  }

  /**
   * Runs `op` (about `keys`) until it succeeds, giving up after `commandTimeoutMs`; see
   * {@linkcode attempt}.
   */
  async call<T>(what: string, keys: readonly string[], op: () => Promise<T>): Promise<T> {
    this.checkOpen(what);
    try {
      return await this.attempt(what, keys, Date.now() + this.commandTimeoutMs, false, op);
    } catch (error) {
      if (error instanceof DeadlinePassed) throw this.unreachable(what);
      throw error;
    }
  }

  /**
   * Runs `op` until it succeeds or fails with an answer from the server; after a lost connection
   * it waits for the server and runs `op` again. Throws `DeadlinePassed` at `deadline`, and
   * {@linkcode TransportRefusedError} naming `what` and `keys` when the server refuses (any error
   * reply but those that say it cannot serve yet). `op` uses the command connection, and the
   * blocking one too when `blocking`.
   */
  async attempt<T>(
    what: string,
    keys: readonly string[],
    deadline: number,
    blocking: boolean,
    op: (abandon: Abandon) => Promise<T>,
  ): Promise<T> {
    for (;;) {
      this.checkOpen(what);
      if (!this.#up(blocking)) {
        // Not sent while the server is away (node-redis would queue it): it would go out on the
        // reconnect before the server's data was checked.
        this.#silentSince ??= Date.now();
        if (Date.now() >= deadline) throw new DeadlinePassed("Deadline passed");
        await this.#waitForServer(blocking, deadline);
        continue;
      }
      const abandon: Abandon = { abandoned: false };
      try {
        const result = await withDeadline(op(abandon), deadline, abandon);
        this.#silentSince = undefined;
        return result;
      } catch (error) {
        if (this.#closed) {
          throw new TransportClosedError(`Cannot ${what}: the transport is closed`, {
            cause: this.#scrubError(error, what),
          });
        }
        if (error instanceof DeadlinePassed) {
          this.#silentSince ??= Date.now();
          throw error;
        }
        if (isServerReply(error) && isProtocolError(error)) this.#resetCommandConnection();
        const transient = isServerReply(error) && isTransient(error);
        if (!transient && isServerReply(error)) throw this.#refused(what, keys, error);
        if (error instanceof TypeError || error instanceof RangeError) throw error;
        this.#lastError = error;
        this.#silentSince ??= Date.now();
        await this.#waitForServer(blocking, deadline);
      }
    }
  }

  /**
   * Resolves once the connections are all up (after a short pause if they are already), at
   * `deadline`, or on close.
   */
  #waitForServer(blocking: boolean, deadline: number): Promise<void> {
    const up = () => this.#up(blocking);
    const upNow = up();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const check = () => {
        if (up()) wake();
      };
      const timer = setTimeout(wake, upNow ? RETRY_PAUSE_MS : Math.max(0, deadline - Date.now()));
      if (!upNow) this.#waiters.add(check);
    });
  }

  /** Waits for the blocking connection's turn; call the function returned to end it. */
  async takeTurn(): Promise<() => void> {
    let release!: () => void;
    const previous = this.#turn;
    this.#turn = new Promise<void>((resolve) => release = resolve);
    await previous;
    return release;
  }
}

/** Settles like `promise`, or rejects with `DeadlinePassed` at `deadline`, marking `abandon`. */
function withDeadline<T>(promise: Promise<T>, deadline: number, abandon: Abandon): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      abandon.abandoned = true;
      reject(new DeadlinePassed("Deadline passed"));
    }, Math.max(0, deadline - Date.now()));
    promise.then(resolve, reject).finally(() => clearTimeout(timer));
  });
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
