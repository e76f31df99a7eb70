// The Redis client, kept apart from deps.ts so that only a `redis://` URL ever loads it.
export { createClient, RESP_TYPES } from "npm:@redis/client@5.10.0";
