-- Apply one folded batch atomically: dedupe and version checks first, then every write.
-- KEYS: every key the batch reads or writes, each once (streams/redis_sink.py ScriptKeys),
-- declared or in the batch's `keys`; the batch names a key by its position in KEYS, so the
-- script builds no key itself.
-- ARGV[1] is the whole batch as MessagePack (one argument: packing thousands of separate
-- arguments in redis-py cost more than the fold), a map of (k: a position in KEYS):
--   ttl      dedupe set TTL (s)            offsets  k of the offsets hash
--   seen     [[k, [ids...]], ...]          (dedupe sets: events that join an entity)
--   marked   [[k, [[field, remainders, [ids...]], ...], k of the day's dedupe set], ...]:
--            permanent marks (streams/event_marks.py) by hash and field: 7-byte
--            remainders of their fingerprints packed in one string, in the order of ids.
--            The KPI stage's (`mark:`) name the day's dedupe set; the SLA stage's
--            (`smark:`) name none: no version put its ids in a set.
--   entities [[k, expected_version, stored value, ttl (s, 0 = keep)], ...]; the stored
--            value is "version:state" at expected_version + 1 (core/kpi/codecs.py)
--   hashes   [[k, ttl (0 = keep), [field, ...], [increment, ...]], ...]  (zeros skipped;
--            a k at most once: its new totals are worked out from what it held before)
--   zsets    [['a'|'r', k, member, score], ...]
--   fields   [['s'|'d'|'m', k, field, value], ...]  (m: set when the number is larger)
--   members  [[k, member], ...]             marks    [["topic:partition", offset], ...]
--   journal  k of the journal hash (streams/journal.py), with
--   parts    [id, ...]: parts of the hashes this call leaves to the next ones, which the
--            worker staged in the journal (field "part:<id>") just before; the batch
--            checks they are there and commits them (field <id> = "1") once it is written
-- or, to apply one such part:
--   journal  k of the journal hash            drain    the part's id
--   part     the part, {keys = [key, ...], hashes = [as above, k in its keys]}; absent
--            for a part the version before stored whole under its id (read from there)
-- or, to delete a staged part no batch committed (an orphan):
--   journal  k of the journal hash            forget   the part's id
-- Numbers stay below 2^53 (µs timestamps, 1/10,000 money units), exact in Lua's doubles;
-- a larger increment comes as decimal text, which HINCRBY adds exactly in 64 bits.
-- Returns {0, seen or mark key, id, ...} when ids were counted before, {2, key, ...} when an
-- entity changed since it was read, {3, key, field} when an increment would take a total
-- past TOTAL_LIMIT, {5, id} when a part to commit was not staged (nothing written in all
-- four cases: Redis never rolls a script
-- back, so everything that can fail is checked before the first write), else {1}. A part
-- returns {3, key, field} too, and stays in the journal; {1} once applied, {4} when no
-- part has that id (applied before).
-- Globals are table lookups in Redis's Lua 5.1: the per-field loops below use locals.
local call, unpack, tonumber, abs, format, find, sub, min =
  redis.call, unpack, tonumber, math.abs, string.format, string.find, string.sub, math.min
local batch = cmsgpack.unpack(ARGV[1])
-- On one Redis the keys come in the batch (`keys`), only the first declared: redis-py
-- packs each command argument in Python, which cost the worker more than its fold on a
-- big batch (streams/redis_sink.py script_call). On a cluster all are declared and `keys`
-- is absent.
local KEYS = batch.keys or KEYS
local CHUNK = 1000
-- Below 2^63 (HINCRBY's limit) by more than a double's rounding error at this size.
local TOTAL_LIMIT = 9e18
-- Integers up to 2^53 are exact in Lua's doubles, and so is a sum that stays below it.
local EXACT = 2 ^ 53

-- Each hash's new totals are worked out here, from one HMGET per CHUNK fields, and
-- written below with one HSET per CHUNK fields: one HINCRBY per field cost a redis.call
-- per field (~1 µs inside HINCRBY, plus the call's own), and the fields per event are
-- what grows with the number of managers (issue 19). A total is set only where a
-- double adds it exactly (below 2^53 before and after); others, and increments sent
-- as text, are added by HINCRBY, exact in 64 bits. Returns the totals of each hash, or
-- nil, key, field when an increment would take a total past TOTAL_LIMIT.
local function new_totals(keys, hashes)
  local totals = {}
  for h, hash in ipairs(hashes) do
    local key, names, amounts = keys[hash[1]], hash[3], hash[4]
    local sets, adds, set_count, add_count = {}, {}, 0, 0
    for start = 1, #names, CHUNK do
      local stop = min(start + CHUNK - 1, #names)
      local held = call('HMGET', key, unpack(names, start, stop))
      for i = 1, stop - start + 1 do
        local at = start + i - 1
        local amount = amounts[at]
        local before = tonumber(held[i]) or 0
        local total = type(amount) == 'number' and before + amount
        if total and total < EXACT and total > -EXACT and before < EXACT and before > -EXACT then
          if amount ~= 0 then
            -- as text: Redis 7.0 would print a number with "%.17g", ~4x the cost of "%d"
            sets[set_count + 1] = names[at]
            sets[set_count + 2] = format('%d', total)
            set_count = set_count + 2
          end
        else
          local number = tonumber(amount)
          if number ~= 0 then
            if abs(number) >= TOTAL_LIMIT or abs(before + number) >= TOTAL_LIMIT then
              return nil, key, names[at]
            end
            adds[add_count + 1] = names[at]
            adds[add_count + 2] = amount
            add_count = add_count + 2
          end
        end
      end
    end
    totals[h] = {sets, adds}
  end
  return totals
end

local function write_totals(keys, hashes, totals)
  for h, hash in ipairs(hashes) do
    local key = keys[hash[1]]
    local sets, adds = totals[h][1], totals[h][2]
    for start = 1, #sets, 2 * CHUNK do
      call('HSET', key, unpack(sets, start, min(start + 2 * CHUNK - 1, #sets)))
    end
    for i = 1, #adds, 2 do call('HINCRBY', key, adds[i], adds[i + 1]) end
    if hash[2] > 0 then call('EXPIRE', key, hash[2]) end
  end
end

-- A journal part (streams/journal.py): hashes a batch already counted, committed by its
-- first call, applied and removed here in one step, so whoever drains it does so once.
if batch.drain then
  local journal, id, part = KEYS[batch.journal], batch.drain, batch.part
  local committed = call('HGET', journal, id)
  if not committed then return {4} end
  if not part then part = cmsgpack.unpack(committed) end  -- stored whole by the version before
  local totals, key, field = new_totals(part.keys, part.hashes)
  if not totals then return {3, key, field} end
  write_totals(part.keys, part.hashes, totals)
  call('HDEL', journal, id, 'part:' .. id)
  return {1}
end
if batch.forget then
  local journal, id = KEYS[batch.journal], batch.forget
  if call('HEXISTS', journal, id) == 0 then call('HDEL', journal, 'part:' .. id) end
  return {1}
end

local dups = {}
for _, group in ipairs(batch.seen) do
  local key, ids = KEYS[group[1]], group[2]
  for start = 1, #ids, CHUNK do
    local stop = min(start + CHUNK - 1, #ids)
    local flags = call('SMISMEMBER', key, unpack(ids, start, stop))
    for i, flag in ipairs(flags) do
      if flag == 1 then
        dups[#dups + 1] = key
        dups[#dups + 1] = ids[start + i - 1]
      end
    end
  end
end
-- A field's value is remainders packed back to back: a match counts only at a multiple
-- of their width (one straddling two marks is neither). string.find plain is memchr and
-- memcmp: a field holds ~1/256 of a day's marks (~140 B at 5,000 events a day).
local WIDTH = 7
local function marked(held, remainder)
  local at = find(held, remainder, 1, true)
  while at and (at - 1) % WIDTH ~= 0 do at = find(held, remainder, at + 1, true) end
  return at ~= nil
end
local marks_held = {}
for g, group in ipairs(batch.marked) do
  local key, shards, names = KEYS[group[1]], group[2], {}
  for i, shard in ipairs(shards) do names[i] = shard[1] end
  local held = call('HMGET', key, unpack(names))  -- at most 256 fields
  marks_held[g] = held
  local all_ids = {}
  for i, shard in ipairs(shards) do
    local have, remainders, ids = held[i], shard[2], shard[3]
    for j = 1, #ids do
      all_ids[#all_ids + 1] = ids[j]
      if have and marked(have, sub(remainders, (j - 1) * WIDTH + 1, j * WIDTH)) then
        dups[#dups + 1] = key
        dups[#dups + 1] = ids[j]
      end
    end
  end
  -- An event counted before marks existed (a version that put every id in the dedupe
  -- set) has its id there only, for SALESPULSE_DEDUPE_RETENTION_DAYS after an upgrade.
  local day_ids = group[3] and KEYS[group[3]]
  for start = 1, day_ids and #all_ids or 0, CHUNK do
    local stop = min(start + CHUNK - 1, #all_ids)
    local flags = call('SMISMEMBER', day_ids, unpack(all_ids, start, stop))
    for i, flag in ipairs(flags) do
      if flag == 1 then
        dups[#dups + 1] = day_ids
        dups[#dups + 1] = all_ids[start + i - 1]
      end
    end
  end
end
if #dups > 0 then
  table.insert(dups, 1, 0)
  return dups
end

local conflicts = {}
-- An entity is a string "version:state": one MGET per CHUNK entities, not a GET each
-- (a redis.call costs more than the state it returns; -25 % of this loop's time).
local entities = batch.entities
for start = 1, #entities, CHUNK do
  local stop = min(start + CHUNK - 1, #entities)
  local names = {}
  for i = start, stop do names[i - start + 1] = KEYS[entities[i][1]] end
  local held = call('MGET', unpack(names))
  for i = 1, stop - start + 1 do
    local value, stored = held[i], 0
    if value then stored = tonumber(sub(value, 1, find(value, ':', 1, true) - 1)) end
    if stored ~= entities[start + i - 1][2] then conflicts[#conflicts + 1] = names[i] end
  end
end
if #conflicts > 0 then
  table.insert(conflicts, 1, 2)
  return conflicts
end

local totals, over_key, over_field = new_totals(KEYS, batch.hashes)
if not totals then return {3, over_key, over_field} end
local parts = batch.parts or {}
for _, id in ipairs(parts) do
  if call('HEXISTS', KEYS[batch.journal], 'part:' .. id) == 0 then return {5, id} end
end

for _, group in ipairs(batch.seen) do
  local key, ids = KEYS[group[1]], group[2]
  for start = 1, #ids, CHUNK do
    call('SADD', key, unpack(ids, start, min(start + CHUNK - 1, #ids)))
  end
  call('EXPIRE', key, batch.ttl)
end
-- Marks are kept as long as the `all` bucket that counted them: no expiry.
for g, group in ipairs(batch.marked) do
  local held, values = marks_held[g], {}
  for i, shard in ipairs(group[2]) do
    values[#values + 1] = shard[1]
    values[#values + 1] = (held[i] or '') .. shard[2]
  end
  call('HSET', KEYS[group[1]], unpack(values))
end
for _, entity in ipairs(batch.entities) do
  if (entity[4] or 0) > 0 then call('SET', KEYS[entity[1]], entity[3], 'EX', entity[4])
  else call('SET', KEYS[entity[1]], entity[3]) end
end

write_totals(KEYS, batch.hashes, totals)

for _, op in ipairs(batch.zsets) do
  if op[1] == 'a' then call('ZADD', KEYS[op[2]], op[4], op[3])
  else call('ZREM', KEYS[op[2]], op[3]) end
end

for _, op in ipairs(batch.fields) do
  local key = KEYS[op[2]]
  if op[1] == 's' then call('HSET', key, op[3], op[4])
  elseif op[1] == 'm' then
    local held = tonumber(call('HGET', key, op[3]) or '0')
    if tonumber(op[4]) > held then call('HSET', key, op[3], op[4]) end
  else call('HDEL', key, op[3]) end
end

for _, member in ipairs(batch.members) do
  call('SADD', KEYS[member[1]], member[2])
end

local offsets = KEYS[batch.offsets]
for _, mark in ipairs(batch.marks) do
  local current = tonumber(call('HGET', offsets, mark[1]) or '-1')
  if mark[2] > current then call('HSET', offsets, mark[1], mark[2]) end
end
-- The hashes past the first call's share (streams/journal.py), staged by the worker:
-- committed here, drained next by the worker, or by whoever finds them after a crash.
if #parts > 0 then
  local commits = {}
  for i, id in ipairs(parts) do
    commits[2 * i - 1] = id
    commits[2 * i] = '1'
  end
  call('HSET', KEYS[batch.journal], unpack(commits))
end
return {1}
