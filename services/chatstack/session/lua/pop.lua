-- KEYS: header, turns, prefix_sums, ids
-- ARGV: owner, expected_version, now_ms, op_id, pending_id (remove the pending turns, that one
--       their top, instead of visible ones, or ''), count (visible turns to remove at once, all or none)
-- Returns {version, position, turn_json...} (removed turns top first; position: the lowest one's).
-- A retried pop (same op_id) returns the first result.
local h, turns, z, ids = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hd = header(h, ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
if ARGV[4] ~= '' and redis.call('HGET', h, 'last_op') == ARGV[4] then
  return cjson.decode(redis.call('HGET', h, 'last_result'))
end
local version = hd.version + 1
local pending_id = ARGV[5] or ''
if pending_id ~= '' then  -- a failed exchange takes its pending turn back
  if hd.pending ~= pending_id then return redis.error_reply('GONE') end
  local position = hd.next - hd.base
  local result = {version, position}
  for _, raw in ipairs(drop_pending(KEYS, hd)) do result[#result + 1] = raw end
  redis.call('HSET', h, 'version', version, 'updated_ms', ARGV[3], 'last_op', ARGV[4],
    'last_result', cjson.encode(result))
  return result
end
reap(KEYS, hd, ARGV[3])
if hd.pending then return redis.error_reply('BUSY') end
local err = check_version(hd, ARGV[2])
if err then return err end
local count = math.max(1, tonumber(ARGV[6] or 1))
if hd.next - hd.base < count then
  if hd.next == hd.base then return redis.error_reply('EMPTY') end
  return redis.error_reply('SHORT ' .. (hd.next - hd.base))
end
local result = {version, hd.next - count - hd.base}
local tok_end = hd.tok_end
for i = 1, count do
  local raw = redis.call('RPOP', turns)
  local turn = cjson.decode(raw)
  redis.call('ZREM', z, member(hd.next - i))
  redis.call('HDEL', ids, turn.id)
  tok_end = tok_end - turn.t
  result[#result + 1] = raw
end
redis.call('HSET', h, 'next', hd.next - count, 'tok_end', tok_end, 'version', version,
  'updated_ms', ARGV[3], 'last_op', ARGV[4], 'last_result', cjson.encode(result))
keep(KEYS, hd)
return result
