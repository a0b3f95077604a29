-- Sum the fields of a window's bucket hashes (KEYS) inside Redis.
--
-- Why: the 1h window is 60 minute buckets, ~16,000 fields for a 200-manager office, and
-- shipping them to be summed in Python cost a fifth of a scrape; the summed window has
-- ~900. Returns {1, field, sum, field, sum, ...} with integer sums, or {0} when a value
-- or a running sum leaves the range in which a Lua number (a double) is an exact integer:
-- the caller then reads the buckets and sums them in Python, exactly.
--
-- ARGV, if any, are ascending key counts: the sums after that many KEYS are each returned,
-- {1, {field, sum, ...}, {field, sum, ...}, ...}, so that a window whose buckets begin
-- another's (15m: the newest 15 of the 1h window's minutes) costs no second pass.
local call, tonumber = redis.call, tonumber
local EXACT = 9007199254740992 -- 2^53
local sums, order, n = {}, {}, 0
local marks, sections = {}, {}
for i, mark in ipairs(ARGV) do
  marks[tonumber(mark)] = i
end

local function summed()
  local out = {}
  for j = 1, n do
    local field = order[j]
    out[2 * j - 1] = field
    out[2 * j] = sums[field]
  end
  return out
end

for k, key in ipairs(KEYS) do
  local flat = call('HGETALL', key)
  for i = 1, #flat, 2 do
    local field = flat[i]
    local sum = tonumber(flat[i + 1])
    local held = sums[field]
    if held == nil then
      n = n + 1
      order[n] = field
    else
      sum = held + sum
    end
    if sum >= EXACT or sum <= -EXACT then
      return {0}
    end
    sums[field] = sum
  end
  if marks[k] then
    sections[marks[k]] = summed()
  end
end
if #ARGV > 0 then
  table.insert(sections, 1, 1)
  return sections
end
local out = summed()
table.insert(out, 1, 1)
return out
