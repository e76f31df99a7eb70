import assert from "node:assert/strict";
import { createTransport, redactUrl } from "../transport/mod.ts";

Deno.test("redactUrl() hides the whole password, one with '@' in it too", () => {
  assert.equal(redactUrl("redis://:secret@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
  assert.equal(redactUrl("redis://alice:se@cret@db:6379/0"), "redis://alice:***@db:6379/0");
  assert.equal(redactUrl("rediss://a:b@db:6380?ca=/ca.pem"), "rediss://a:***@db:6380?ca=/ca.pem");
  assert.equal(redactUrl("redis://db:6379"), "redis://db:6379");
  assert.equal(redactUrl("memory:"), "memory:");
  assert.doesNotMatch(redactUrl("redis//:secret@db"), /secret/);
});

Deno.test("createTransport() refuses an unknown scheme without showing any of the password", async () => {
  const error = await createTransport("http://alice:pa@ss@db:80").catch((e) => e);
  assert.ok(error instanceof TypeError, String(error));
  assert.match(error.message, /expected "memory:"/);
  assert.doesNotMatch(error.message, /pa@|ss@|pa%40ss/);
});
