-- KEYS: header, owner_index   ARGV: owner, sid, now_ms, ttl, sys, sys_tokens, meta_json, index_ttl
local h, idx = KEYS[1], KEYS[2]
if redis.call('EXISTS', h) == 1 then
  return redis.error_reply('EXISTS')
end
redis.call('HSET', h, 'owner', ARGV[1], 'created_ms', ARGV[3], 'updated_ms', ARGV[3],
  'ttl', ARGV[4], 'sys', ARGV[5], 'sys_tokens', ARGV[6], 'meta', ARGV[7], 'version', 1,
  'base', 0, 'next', 0, 'tok_base', 0, 'tok_end', 0)
redis.call('PEXPIRE', h, tonumber(ARGV[4]) * 1000)
index_session(idx, ARGV[2], ARGV[3], ARGV[8])
return redis.call('HGETALL', h)
