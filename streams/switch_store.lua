-- Switch the KPI store to the key set a rebuild filled, atomically (one script: no reader
-- or worker batch runs in between, so none sees a mix of both sets).
-- ARGV[1] live prefix, ARGV[2] staging prefix (live prefix .. "rebuild:"),
-- ARGV[3] KEYS pattern matching every key of both (the live prefix, glob-escaped, .. "*"),
-- ARGV[4] the store's key families, space-separated (salespulse/core/kpi/redis_layout.py STORE_FAMILIES),
-- ARGV[5..] the consumer groups whose watermarks the staging set must cover.
-- Returns {0, group, partition, live offset, staged offset} when a live worker applied
-- beyond what the staging set holds (nothing changed: the rebuild reads on and retries),
-- else {1, keys dropped, keys moved}.
local live, staging = ARGV[1], ARGV[2]

for i = 5, #ARGV do
  local marks = redis.call('HGETALL', live .. 'offsets:' .. ARGV[i])
  for j = 1, #marks, 2 do
    local staged = redis.call('HGET', staging .. 'offsets:' .. ARGV[i], marks[j])
    if not staged or tonumber(staged) < tonumber(marks[j + 1]) then
      return {0, ARGV[i], marks[j], marks[j + 1], staged or '-1'}
    end
  end
end

local families = {}
for family in string.gmatch(ARGV[4], '%S+') do families[#families + 1] = family end
local function in_store(rest)
  for _, family in ipairs(families) do
    if string.sub(family, -1) == ':' then
      if string.sub(rest, 1, #family) == family then return true end
    elseif rest == family then return true end
  end
  return false
end

local keys = redis.call('KEYS', ARGV[3])
local staged_keys = {}
local dropped, moved = 0, 0
for _, key in ipairs(keys) do
  if string.sub(key, 1, #staging) == staging then
    staged_keys[#staged_keys + 1] = key
  elseif in_store(string.sub(key, #live + 1)) then
    redis.call('DEL', key)
    dropped = dropped + 1
  end
end
-- Entity states carry a version that a worker's batch must match (apply_batch.lua). A batch
-- folded on the old set's states (in flight during the switch, or from a worker's state
-- cache) could meet a rebuilt state of the same version by coincidence and be applied on
-- the wrong base: every rebuilt version is therefore lifted above any version the old set
-- can hold, to now in microseconds (about 1.8e15, exact in a double; a later switch
-- lifts higher still, and no entity is written a million times a second in between).
local now = redis.call('TIME')
local base = tonumber(now[1]) * 1000000 + tonumber(now[2])
local entities = live .. 'ent:'
for _, key in ipairs(staged_keys) do
  local target = live .. string.sub(key, #staging + 1)
  redis.call('RENAME', key, target)
  moved = moved + 1
  if string.sub(target, 1, #entities) == entities then
    local held = redis.call('GET', target)
    local version, state = string.match(held, '^(%d+):(.*)$')
    redis.call('SET', target, string.format('%d:', base + tonumber(version)) .. state, 'KEEPTTL')
  end
end
return {1, dropped, moved}
