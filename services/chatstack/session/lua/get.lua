-- KEYS: header, turns, prefix_sums, ids   ARGV: owner
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
touch(KEYS, hd.ttl)
return redis.call('HGETALL', KEYS[1])
