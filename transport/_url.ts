/**
 * Transport URLs fit to print: the one place a password is taken out of a URL.
 *
 * @module
 */

/**
 * `url` with its password replaced by `***`, fit for messages and logs. A URL that cannot be
 * parsed is shown only when it cannot hold a password (it has no `@`).
 *
 * @example
 * ```ts
 * import { redactUrl } from "./mod.ts";
 *
 * console.log(redactUrl("redis://user:secret@db.example:6379/0"));
 * // "redis://user:***@db.example:6379/0"
 * ```
 */
export function redactUrl(url: string): string {
  if (CLUSTER_SCHEME.test(url)) {
    const cluster = parseClusterUrl(url);
    if (!cluster) return url.includes("@") ? "(a URL that cannot be parsed)" : url;
    const user = cluster.password === "" ? cluster.username : `${cluster.username}:***`;
    const at = cluster.username === "" && cluster.password === "" ? "" : `${user}@`;
    return `${cluster.scheme}//${at}${cluster.seeds.join(",")}${cluster.path}${cluster.search}`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.includes("@") ? "(a URL that cannot be parsed)" : url;
  }
  if (parsed.password !== "") parsed.password = "***";
  return parsed.href;
}

const CLUSTER_SCHEME = /^rediss?\+cluster:/i;

/** The parts of a `redis+cluster://` or `rediss+cluster://` URL. */
export interface ClusterUrl {
  /** `"redis+cluster:"` or `"rediss+cluster:"`. */
  scheme: string;
  /** As written (percent-encoded), `""` when absent. */
  username: string;
  /** As written (percent-encoded), `""` when absent. */
  password: string;
  /** The seed nodes, `host:port` each. */
  seeds: string[];
  /** `""` or `"/"` (a database number is refused: a cluster has only database 0). */
  path: string;
  /** `""` or the query with its `?`. */
  search: string;
}

/**
 * Parses `redis+cluster://[user:password@]host:port[,host:port…][/][?query]` (`new URL` refuses a
 * list of hosts), or returns `undefined` when `url` is not of that form.
 */
export function parseClusterUrl(url: string): ClusterUrl | undefined {
  const match = /^(rediss?\+cluster:)\/\/([^/?#]*)(\/?)(\?[^#]*)?$/i.exec(url);
  if (!match) return undefined;
  const [, scheme, authority, path, search = ""] = match;
  const at = authority.lastIndexOf("@");
  const userinfo = at < 0 ? "" : authority.slice(0, at);
  const colon = userinfo.indexOf(":");
  const seeds = authority.slice(at + 1).split(",");
  if (!seeds.every((seed) => /^(\[[0-9a-f:.]+\]|[^\s:@[\]]+):\d{1,5}$/i.test(seed))) {
    return undefined;
  }
  return {
    scheme: scheme.toLowerCase(),
    username: colon < 0 ? userinfo : userinfo.slice(0, colon),
    password: colon < 0 ? "" : userinfo.slice(colon + 1),
    seeds,
    path,
    search,
  };
}

/** `s` percent-decoded, or `s` itself when it is not valid percent-encoding. */
export function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
