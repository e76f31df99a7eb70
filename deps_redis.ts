// The Redis client, loaded on import. Only modules that need Redis import this file.
import { loadRedisClient } from "./deps.ts";

export const { createClient, RESP_TYPES, ErrorReply } = await loadRedisClient();
