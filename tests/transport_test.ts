import { MemoryTransport } from "../transport/memory.ts";
import { RedisTransport } from "../transport/redis.ts";
import {
  hasRedisServer,
  redisAvailable,
  type RedisServer,
  startRedisServer,
  testRedisUrl,
} from "./_redis_server.ts";
import { transportContract, type TransportHandle } from "./transport_contract.ts";

transportContract("MemoryTransport", () => {
  const transport = new MemoryTransport();
  return Promise.resolve({ transport, [Symbol.asyncDispose]: () => transport.close() });
});

// What a Worker host uses: the same streams, reached through a MessagePort.
transportContract("MemoryTransport through a port", () => {
  const owner = new MemoryTransport();
  const transport = MemoryTransport.fromPort(owner.openPort());
  return Promise.resolve({
    transport,
    async [Symbol.asyncDispose]() {
      await transport.close();
      await owner.close();
    },
  });
});

if (!redisAvailable()) {
  // deno-lint-ignore no-console
  console.warn("RedisTransport contract ignored: no redis-server on PATH and REDIS_URL is unset");
}

// Each test gets its own server, so nothing outlives the test that started it.
transportContract("RedisTransport", openRedis, { ignore: !redisAvailable() });

async function openRedis(): Promise<TransportHandle> {
  let server: RedisServer | undefined;
  let url = testRedisUrl();
  if (hasRedisServer()) {
    server = await startRedisServer();
    url = server.url;
  }
  try {
    const transport = await RedisTransport.connect(url!);
    return {
      transport,
      async [Symbol.asyncDispose]() {
        await transport.close();
        await server?.[Symbol.asyncDispose]();
      },
    };
  } catch (error) {
    await server?.[Symbol.asyncDispose]();
    throw error;
  }
}
