-- Apply one folded batch atomically: dedupe and version checks first, then every write.
-- ARGV: dedupe_ttl, tenants_key, offsets_key, then counted sections:
--   seen groups:   n, then per group: seen_key, n_ids, ids...
--   entities:      n, then per entity: key, expected_version, state_json
--   kpi hashes:    n, then per hash: key, ttl (0 = keep), n_pairs, (field, increment)...
--   sorted sets:   n, then per op: 'a' (add) | 'r' (remove), key, member, score
--   hash fields:   n, then per op: 's' (set) | 'd' (delete), key, field, value
--   set members:   n, then per op: key, member
--   offsets:       n, then per entry: "topic:partition", offset
-- Returns {0, seen_key, id, ...} when ids were counted before, {2, key, ...} when an
-- entity changed since it was read (nothing written in both cases), else {1}.
local pos = 4
local function take()
  local v = ARGV[pos]
  pos = pos + 1
  return v
end
local CHUNK = 1000

local seen_groups = {}
for _ = 1, tonumber(take()) do
  local key = take()
  local ids = {}
  for i = 1, tonumber(take()) do ids[i] = take() end
  seen_groups[#seen_groups + 1] = {key, ids}
end
local dups = {}
for _, group in ipairs(seen_groups) do
  local key, ids = group[1], group[2]
  for start = 1, #ids, CHUNK do
    local stop = math.min(start + CHUNK - 1, #ids)
    local flags = redis.call('SMISMEMBER', key, unpack(ids, start, stop))
    for i, flag in ipairs(flags) do
      if flag == 1 then
        dups[#dups + 1] = key
        dups[#dups + 1] = ids[start + i - 1]
      end
    end
  end
end
if #dups > 0 then
  table.insert(dups, 1, 0)
  return dups
end

local entities = {}
local conflicts = {}
for _ = 1, tonumber(take()) do
  local key, expected, blob = take(), tonumber(take()), take()
  local stored = tonumber(redis.call('HGET', key, 'v') or '0')
  if stored ~= expected then conflicts[#conflicts + 1] = key end
  entities[#entities + 1] = {key, expected + 1, blob}
end
if #conflicts > 0 then
  table.insert(conflicts, 1, 2)
  return conflicts
end

local dedupe_ttl = tonumber(ARGV[1])
for _, group in ipairs(seen_groups) do
  local key, ids = group[1], group[2]
  for start = 1, #ids, CHUNK do
    redis.call('SADD', key, unpack(ids, start, math.min(start + CHUNK - 1, #ids)))
  end
  redis.call('EXPIRE', key, dedupe_ttl)
end
for _, entity in ipairs(entities) do
  redis.call('HSET', entity[1], 'v', entity[2], 's', entity[3])
end

for _ = 1, tonumber(take()) do
  local key, ttl = take(), tonumber(take())
  for _ = 1, tonumber(take()) do
    redis.call('HINCRBY', key, take(), take())
  end
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end

for _ = 1, tonumber(take()) do
  local op, key, member, score = take(), take(), take(), take()
  if op == 'a' then redis.call('ZADD', key, score, member) else redis.call('ZREM', key, member) end
end

for _ = 1, tonumber(take()) do
  local op, key, field, value = take(), take(), take(), take()
  if op == 's' then redis.call('HSET', key, field, value) else redis.call('HDEL', key, field) end
end

for _ = 1, tonumber(take()) do
  redis.call('SADD', take(), take())
end

local offsets_key = ARGV[3]
for _ = 1, tonumber(take()) do
  local tp, offset = take(), tonumber(take())
  local current = tonumber(redis.call('HGET', offsets_key, tp) or '-1')
  if offset > current then redis.call('HSET', offsets_key, tp, offset) end
end
return {1}
