-- Apply one folded batch atomically: dedupe check, KPI increments, offset watermarks.
-- ARGV: dedupe_ttl, day_ttl, tenants_key, offsets_key, then four counted sections:
--   seen groups:  n, then per group: seen_key, n_ids, ids...
--   kpi hashes:   n, then per hash:  key, is_day (0/1), n_pairs, (field, increment)...
--   offsets:      n, then per entry: "topic:partition", offset
--   tenants:      n, then names
-- Returns {0, seen_key, id, seen_key, id, ...} when any id was counted before (nothing
-- written), else {1}.
local pos = 5
local function take()
  local v = ARGV[pos]
  pos = pos + 1
  return v
end
local CHUNK = 1000

local seen_groups = {}
for _ = 1, tonumber(take()) do
  local key = take()
  local n = tonumber(take())
  local ids = {}
  for i = 1, n do ids[i] = take() end
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

local dedupe_ttl, day_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, group in ipairs(seen_groups) do
  local key, ids = group[1], group[2]
  for start = 1, #ids, CHUNK do
    redis.call('SADD', key, unpack(ids, start, math.min(start + CHUNK - 1, #ids)))
  end
  redis.call('EXPIRE', key, dedupe_ttl)
end

for _ = 1, tonumber(take()) do
  local key = take()
  local is_day = take() == '1'
  for _ = 1, tonumber(take()) do
    redis.call('HINCRBY', key, take(), take())
  end
  if is_day then redis.call('EXPIRE', key, day_ttl) end
end

local offsets_key = ARGV[4]
for _ = 1, tonumber(take()) do
  local tp = take()
  local offset = tonumber(take())
  local current = tonumber(redis.call('HGET', offsets_key, tp) or '-1')
  if offset > current then redis.call('HSET', offsets_key, tp, offset) end
end

for _ = 1, tonumber(take()) do
  redis.call('SADD', ARGV[3], take())
end
return {1}
