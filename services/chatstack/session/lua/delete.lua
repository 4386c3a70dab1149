-- KEYS: header, turns, prefix_sums, ids, owner_index   ARGV: owner, expected_version, sid
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
local err = check_version(hd, ARGV[2])
if err then return err end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[3])
return hd.version
