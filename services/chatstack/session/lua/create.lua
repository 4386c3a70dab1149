-- KEYS: header, owner_index
-- ARGV: owner, sid, now_ms, ttl, sys, sys_tokens, meta_json, index_ttl, pending_ms (0 = not pending)
local h, idx = KEYS[1], KEYS[2]
if redis.call('EXISTS', h) == 1 then
  return redis.error_reply('EXISTS')
end
redis.call('HSET', h, 'owner', ARGV[1], 'created_ms', ARGV[3], 'updated_ms', ARGV[3],
  'ttl', ARGV[4], 'sys', ARGV[5], 'sys_tokens', ARGV[6], 'meta', ARGV[7], 'version', 1,
  'base', 0, 'next', 0, 'tok_base', 0, 'tok_end', 0)
if tonumber(ARGV[9] or 0) > 0 then  -- unlisted, and gone with its lease unless a push commits into it
  redis.call('HSET', h, 'pending_session', '1')
  redis.call('PEXPIRE', h, tonumber(ARGV[9]))
else
  redis.call('PEXPIRE', h, tonumber(ARGV[4]) * 1000)
end
index_session(idx, ARGV[2], ARGV[3], ARGV[8])
return redis.call('HGETALL', h)
