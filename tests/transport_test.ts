import { MemoryTransport } from "../transport/memory.ts";
import { RedisTransport } from "../transport/redis.ts";
import { openBackend, unavailable } from "./_backends.ts";
import { transportContract } from "./transport_contract.ts";

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

// Each test gets its own server, so nothing outlives the test that started it.
transportContract("RedisTransport", async () => {
  const backend = await openBackend("redis");
  try {
    const transport = await RedisTransport.connect(backend.url);
    return {
      transport,
      async [Symbol.asyncDispose]() {
        await transport.close();
        await backend[Symbol.asyncDispose]();
      },
    };
  } catch (error) {
    await backend[Symbol.asyncDispose]();
    throw error;
  }
}, { ignore: unavailable("redis") !== undefined });
