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
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.includes("@") ? "(a URL that cannot be parsed)" : url;
  }
  if (parsed.password !== "") parsed.password = "***";
  return parsed.href;
}

/** `s` percent-decoded, or `s` itself when it is not valid percent-encoding. */
export function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
