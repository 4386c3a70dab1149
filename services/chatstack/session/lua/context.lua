-- KEYS: header, turns, prefix_sums, ids   ARGV: owner, token_budget
-- The system prompt plus the longest run of newest whole turns that fits the budget.
-- Cost: O(log n) to find the first turn that fits (prefix sums in a sorted set) plus the
-- turns returned; independent of history length.
-- Returns {version, base, turn_count, sys, sys_tokens, turn_json...} (turns oldest first).
local h = KEYS[1]
local hd = header(h, ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
keep(KEYS, hd)
local f = redis.call('HMGET', h, 'sys', 'sys_tokens')
local avail = tonumber(ARGV[2]) - tonumber(f[2])
local first = hd.next
if avail >= 0 and hd.next > hd.base then  -- a budget of exactly the system prompt still holds 0-token turns
  -- Turn i fits with all newer ones iff tok_end - prefix(i) <= avail.
  local r = redis.call('ZRANGEBYSCORE', KEYS[3], hd.tok_end - avail, '+inf', 'LIMIT', 0, 1)
  if #r > 0 then first = tonumber(r[1]) end
end
local out = {hd.version, hd.base, hd.next - hd.base, f[1], f[2]}
if first < hd.next then
  for _, t in ipairs(redis.call('LRANGE', KEYS[2], first - hd.base, hd.next - hd.base - 1)) do out[#out + 1] = t end
end
return out
