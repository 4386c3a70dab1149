-- KEYS: header, turns, prefix_sums, ids   ARGV: owner
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
keep(KEYS, hd)
return redis.call('HGETALL', KEYS[1])
