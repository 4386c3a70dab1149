-- KEYS: header, turns, prefix_sums, ids
-- ARGV: owner, expected_version, now_ms, turn_body_json (object without its opening brace),
--       token_count, turn_id, max_turns (0 = unlimited), policy ('reject' | 'evict'),
--       pending_ms (0 = visible at once), commit_id (pending turn this push commits, or ''),
--       replace_id (top turn this push replaces, or ''), commit_session ('1': a pending session
--       becomes a session like any other), join_id (the pending turn this pending push joins:
--       the group becomes visible, or goes, as one; or '')
-- Returns {version, position, evicted}. A retried push (same turn_id) returns the stored result.
local h, turns, z, ids = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hd = header(h, ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
local done = redis.call('HGET', ids, ARGV[6])
if done then
  return {hd.version, tonumber(done) - hd.base, 0}
end
reap(KEYS, hd, ARGV[3])
local commit, replace, join = ARGV[10] or '', ARGV[11] or '', ARGV[13] or ''
if commit ~= '' or join ~= '' then
  if hd.pending ~= commit .. join then return redis.error_reply('LAPSED') end
elseif hd.pending then
  return redis.error_reply('BUSY')
end
local err = check_version(hd, ARGV[2])
if err then return err end
if commit ~= '' then  -- the pending turn joins the visible stack, under this one
  hd.next, hd.tok_end, hd.pending = hd.top, hd.top_tok, nil
  redis.call('HSET', h, 'pending', '', 'pending_count', '')
end
if (commit ~= '' or ARGV[12] == '1') and hd.pending_session then
  redis.call('HDEL', h, 'pending_session')
  hd.pending_session = false
end
local tc, max_turns = tonumber(ARGV[5]), tonumber(ARGV[7])
local base, nxt, tok_base, tok_end = hd.base, hd.next, hd.tok_base, hd.tok_end
if join ~= '' then  -- on top of the pending group, which it joins
  nxt, tok_end = hd.top, hd.top_tok
end
if replace ~= '' then
  local raw = nxt > base and redis.call('LINDEX', turns, -1)
  if not raw then return redis.error_reply('NOTURN') end
  local old = cjson.decode(raw)
  if old.id ~= replace then return redis.error_reply('NOTURN') end
  redis.call('RPOP', turns)
  redis.call('ZREM', z, member(nxt - 1))
  redis.call('HDEL', ids, old.id)
  nxt, tok_end = nxt - 1, tok_end - old.t
end
local evicted = 0
if max_turns > 0 and nxt - base >= max_turns then
  if ARGV[8] ~= 'evict' then
    return redis.error_reply('FULL ' .. (nxt - base))
  end
  local old = cjson.decode(redis.call('LPOP', turns))
  redis.call('ZREM', z, member(base))
  redis.call('HDEL', ids, old.id)
  tok_base = tok_base + old.t
  base = base + 1
  evicted = 1
end
redis.call('RPUSH', turns, '{"a":' .. nxt .. ',' .. ARGV[4])
redis.call('ZADD', z, tok_end, member(nxt))
redis.call('HSET', ids, ARGV[6], nxt)
local version = hd.version + 1
redis.call('HSET', h, 'base', base, 'next', nxt + 1, 'tok_base', tok_base,
  'tok_end', tok_end + tc, 'version', version, 'updated_ms', ARGV[3])
local pending_ms = tonumber(ARGV[9] or 0)
if pending_ms > 0 then
  local group_tokens, group_count = tc, 1
  if join ~= '' then
    group_tokens, group_count = hd.top_tok - hd.tok_end + tc, hd.pending_count + 1
  end
  redis.call('HSET', h, 'pending', ARGV[6], 'pending_until', tonumber(ARGV[3]) + pending_ms,
    'pending_tokens', group_tokens, 'pending_count', group_count)
end
keep(KEYS, hd)
return {version, nxt - base, evicted}
