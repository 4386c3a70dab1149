-- KEYS: owner_index   ARGV: owner, key_prefix, offset, count
-- The caller's sessions, newest first. An index entry can outlive its session (expiry) and the
-- id can then be taken by another owner: every entry is checked against the session's own owner
-- field, and entries of expired sessions or of sessions now owned by someone else are removed
-- as they are met. Entries before `offset` are never touched, so earlier pages do not shift.
-- Pending sessions (created pending, no exchange committed yet) are skipped, not listed.
-- Returns {has_more, next_offset, header_flat_list...} (each an HGETALL list plus 'sid', <id>).
local idx, owner, prefix = KEYS[1], ARGV[1], ARGV[2]
local off, cnt = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {0, 0}
local live = 0
while live < cnt do
  local need = cnt - live
  local sids = redis.call('ZREVRANGE', idx, off + live, off + live + need - 1)
  if #sids == 0 then break end
  for _, sid in ipairs(sids) do
    local h = prefix .. '{' .. sid .. '}:h'
    local f = redis.call('HMGET', h, 'owner', 'pending_session')
    if f[1] ~= owner then
      redis.call('ZREM', idx, sid)
    elseif f[2] == '1' then
      off = off + 1  -- pending: not listed (yet), not removed
    else
      local fields = redis.call('HGETALL', h)
      fields[#fields + 1] = 'sid'
      fields[#fields + 1] = sid
      out[#out + 1] = fields
      live = live + 1
    end
  end
  if #sids < need then break end
end
if redis.call('ZCARD', idx) > off + live then out[1] = 1 end
out[2] = off + live
return out
