-- KEYS: src header, src turns, src ids, new header, new turns, new prefix_sums, new ids, owner_index
-- ARGV: owner, expected_version, keep_turns (-1 = use before_turn_id), before_turn_id,
--       new_sid, now_ms, meta_json, index_ttl, pending_ms (0 = not pending)
-- The new session keeps the source's bottom turns with their absolute positions and ids.
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
local err = check_version(hd, ARGV[2])
if err then return err end
local kept = tonumber(ARGV[3])
if kept < 0 then
  local pos = redis.call('HGET', KEYS[3], ARGV[4])
  if not pos or tonumber(pos) >= hd.next then return redis.error_reply('NOTURN') end  -- pending
  kept = tonumber(pos) - hd.base
end
if kept > hd.next - hd.base then return redis.error_reply('RANGE ' .. (hd.next - hd.base)) end
if redis.call('EXISTS', KEYS[4]) == 1 then return redis.error_reply('EXISTS') end
local src = redis.call('HMGET', KEYS[1], 'sys', 'sys_tokens', 'ttl')
local tok = hd.tok_base
if kept > 0 then
  local copied = redis.call('LRANGE', KEYS[2], 0, kept - 1)
  for i, raw in ipairs(copied) do
    local t = cjson.decode(raw)
    redis.call('ZADD', KEYS[6], tok, member(hd.base + i - 1))
    redis.call('HSET', KEYS[7], t.id, hd.base + i - 1)
    tok = tok + t.t
  end
  redis.call('RPUSH', KEYS[5], unpack(copied))
end
redis.call('HSET', KEYS[4], 'owner', ARGV[1], 'created_ms', ARGV[6], 'updated_ms', ARGV[6],
  'ttl', src[3], 'sys', src[1], 'sys_tokens', src[2], 'meta', ARGV[7], 'version', 1,
  'base', hd.base, 'next', hd.base + kept, 'tok_base', hd.tok_base, 'tok_end', tok)
keep({KEYS[1], KEYS[2], KEYS[3]}, hd)
if tonumber(ARGV[9] or 0) > 0 then  -- unlisted, and gone with its lease unless a push commits into it
  redis.call('HSET', KEYS[4], 'pending_session', '1')
  touch({KEYS[4], KEYS[5], KEYS[6], KEYS[7]}, tonumber(ARGV[9]) / 1000)
else
  touch({KEYS[4], KEYS[5], KEYS[6], KEYS[7]}, tonumber(src[3]))
end
index_session(KEYS[8], ARGV[5], ARGV[6], ARGV[8])
return redis.call('HGETALL', KEYS[4])
