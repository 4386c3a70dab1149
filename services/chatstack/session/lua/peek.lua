-- KEYS: header, turns, prefix_sums, ids   ARGV: owner, n
-- Returns {version, base, turn_json...} for the top n turns, oldest first.
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
keep(KEYS, hd)
local out = {hd.version, hd.base}
local n = math.min(tonumber(ARGV[2]), hd.next - hd.base)
if n > 0 then
  local last = hd.next - hd.base - 1
  for _, t in ipairs(redis.call('LRANGE', KEYS[2], last - n + 1, last)) do out[#out + 1] = t end
end
return out
