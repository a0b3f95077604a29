-- Sum the fields of a window's bucket hashes (KEYS) inside Redis.
--
-- Why: the 1h window is 60 minute buckets, ~16,000 fields for a 200-manager office, and
-- shipping them to be summed in Python cost a fifth of a scrape; the summed window has
-- ~900. Returns {1, field, sum, field, sum, ...} with integer sums, or {0} when a value
-- or a running sum leaves the range in which a Lua number (a double) is an exact integer:
-- the caller then reads the buckets and sums them in Python, exactly.
local EXACT = 9007199254740992 -- 2^53
local sums, order = {}, {}
for _, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local field = flat[i]
    local sum = tonumber(flat[i + 1])
    local held = sums[field]
    if held == nil then
      order[#order + 1] = field
    else
      sum = held + sum
    end
    if sum >= EXACT or sum <= -EXACT then
      return {0}
    end
    sums[field] = sum
  end
end
local out = {1}
for _, field in ipairs(order) do
  out[#out + 1] = field
  out[#out + 1] = sums[field]
end
return out
