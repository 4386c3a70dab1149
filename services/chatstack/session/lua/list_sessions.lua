-- KEYS: owner_index   ARGV: key_prefix, offset, count
-- The caller's sessions, newest first. Index entries of expired sessions are removed as they
-- are met; entries before `offset` are never touched, so earlier pages do not shift.
-- Returns {has_more, header_flat_list...} (each an HGETALL list plus 'sid', <id>).
local idx, prefix = KEYS[1], ARGV[1]
local off, cnt = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {0}
local live = 0
while live < cnt do
  local need = cnt - live
  local sids = redis.call('ZREVRANGE', idx, off + live, off + live + need - 1)
  if #sids == 0 then break end
  for _, sid in ipairs(sids) do
    local fields = redis.call('HGETALL', prefix .. '{' .. sid .. '}:h')
    if #fields == 0 then
      redis.call('ZREM', idx, sid)
    else
      fields[#fields + 1] = 'sid'
      fields[#fields + 1] = sid
      out[#out + 1] = fields
      live = live + 1
    end
  end
  if #sids < need then break end
end
if redis.call('ZCARD', idx) > off + live then out[1] = 1 end
return out
