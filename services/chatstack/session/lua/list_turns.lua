-- KEYS: header, turns, prefix_sums, ids   ARGV: owner, offset, count
-- Returns {version, base, turn_count, turn_json...} from offset (0 = bottom), oldest first.
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
keep(KEYS, hd)
local off, cnt = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {hd.version, hd.base, hd.next - hd.base}
local last = math.min(off + cnt, hd.next - hd.base) - 1  -- a pending top turn is not listed
if last >= off then  -- (LRANGE would read a negative end from the list's tail)
  for _, t in ipairs(redis.call('LRANGE', KEYS[2], off, last)) do out[#out + 1] = t end
end
return out
