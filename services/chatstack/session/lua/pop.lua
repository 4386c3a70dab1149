-- KEYS: header, turns, prefix_sums, ids   ARGV: owner, expected_version, now_ms, op_id
-- Returns {version, turn_json, position}. A retried pop (same op_id) returns the first result.
local h, turns, z, ids = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hd = header(h, ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
if ARGV[4] ~= '' and redis.call('HGET', h, 'last_op') == ARGV[4] then
  return cjson.decode(redis.call('HGET', h, 'last_result'))
end
local err = check_version(hd, ARGV[2])
if err then return err end
if hd.next == hd.base then return redis.error_reply('EMPTY') end
local raw = redis.call('RPOP', turns)
local turn = cjson.decode(raw)
local top = hd.next - 1
redis.call('ZREM', z, member(top))
redis.call('HDEL', ids, turn.id)
local version = hd.version + 1
local result = {version, raw, top - hd.base}
redis.call('HSET', h, 'next', top, 'tok_end', hd.tok_end - turn.t, 'version', version,
  'updated_ms', ARGV[3], 'last_op', ARGV[4], 'last_result', cjson.encode(result))
touch(KEYS, hd.ttl)
return result
