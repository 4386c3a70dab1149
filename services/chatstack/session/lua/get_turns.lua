-- KEYS: header, turns, prefix_sums, ids   ARGV: owner, turn_id, count
-- Returns {version, base, turn_count, turn_json...}: the turn and up to count - 1 turns above it,
-- oldest first. One hash lookup and one range: the cost does not grow with the history.
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
local pos = redis.call('HGET', KEYS[4], ARGV[2])
if not pos or tonumber(pos) >= hd.next then return redis.error_reply('NOTURN') end  -- pending
keep(KEYS, hd)
local first = tonumber(pos) - hd.base
local last = math.min(first + tonumber(ARGV[3]), hd.next - hd.base) - 1  -- never the pending top
local out = {hd.version, hd.base, hd.next - hd.base}
for _, t in ipairs(redis.call('LRANGE', KEYS[2], first, last)) do out[#out + 1] = t end
return out
