/**
 * The Lua scripts of the Redis transport: each runs as one step on the server, so that no other
 * client's command falls between its reads and its writes. Each names the `docs/protocol.md`
 * section that describes it.
 *
 * @module
 */

// "Streams and keys", the epoch key. The epoch key's value, set first if the key is missing; one
// call, so that transports that find it missing at once agree on one value.
export const EPOCH_SCRIPT = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`;

// "Consumer groups and reading". XAUTOCLAIM for every stream in KEYS at once (a host's sweep of all
// its inboxes: one call, not one per inbox), in one Lua call so that the delivery counts belong to
// the entries just claimed: for each key, in order, its entries and their counts. A stream without
// the group (or no stream) has none.
export const CLAIM_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  local ok, claimed = pcall(redis.call, 'XAUTOCLAIM', key, ARGV[1], ARGV[2], ARGV[3], '0-0',
    'COUNT', ARGV[4])
  local entries, counts = {}, {}
  if ok then
    for _, entry in ipairs(claimed[2]) do
      if entry then
        local p = redis.call('XPENDING', key, ARGV[1], entry[1], entry[1], 1)
        entries[#entries + 1] = entry
        counts[#counts + 1] = p[1] and p[1][4] or 1
      end
    end
  elseif not string.find(tostring(claimed.err or claimed), 'NOGROUP', 1, true) then
    return redis.error_reply(tostring(claimed.err or claimed))
  end
  out[i] = {entries, counts}
end
return out
`;

// "Consumer groups and reading". The entries pending for one consumer (ARGV[2]), moved to another
// (ARGV[3]) in one call: XPENDING names them, XCLAIM moves them (and drops those deleted from the
// stream). Their delivery counts are XPENDING's plus the claim's one.
export const CLAIM_FROM_SCRIPT = `
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[4], ARGV[2])
if #pending == 0 then return {{}, {}} end
local ids, counts = {}, {}
for _, p in ipairs(pending) do
  ids[#ids + 1] = p[1]
  counts[p[1]] = p[4]
end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, unpack(ids))
local entries, out = {}, {}
for _, entry in ipairs(claimed) do
  if entry then
    entries[#entries + 1] = entry
    out[#out + 1] = counts[entry[1]] + 1
  end
end
return {entries, out}
`;

// "Trimming". One Lua call, so that no entry is delivered or acknowledged between the look and the
// trim. The bound is the earliest of: the first pending entry of each group, the entry after the
// last one delivered to each group, and the first id of the last retainMs (server clock).
export const TRIM_SCRIPT = `
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok or #groups == 0 then return 0 end
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local now = redis.call('TIME')
local bms = math.floor((tonumber(now[1]) * 1000000 + tonumber(now[2])) / 1000) - tonumber(ARGV[1]) + 1
local bseq = 0
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local ms, seq
  if f['pending'] > 0 then
    ms, seq = split(redis.call('XPENDING', KEYS[1], f['name'])[2])
  else
    ms, seq = split(f['last-delivered-id'])
    seq = seq + 1
  end
  if ms < bms or (ms == bms and seq < bseq) then bms, bseq = ms, seq end
end
if bms <= 0 and bseq <= 0 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-%.0f', bms, bseq))
`;
