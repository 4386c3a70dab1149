-- Shared helpers, prepended to every chatstack session script.
-- Keys of one session share the hash tag {sid}; the header hash holds:
--   owner, created_ms, updated_ms, ttl, sys, sys_tokens, meta (JSON), version,
--   base (absolute position of the bottom turn), next (one past the top),
--   tok_base (token prefix sum before `base`), tok_end (prefix sum before `next`),
--   last_op, last_result (idempotency of retried pops),
--   pending, pending_until, pending_tokens, pending_count (the pending group: its top turn's id,
--   lease end in ms, tokens and turns; turns pushed with pending_ms, the later ones joining the
--   first, invisible until a push commits them all),
--   pending_session ('1' while a session created pending has had no commit).
local function member(pos)
  return string.format('%015d', pos)
end

-- The session's header as the caller sees it: `next` and `tok_end` describe the visible stack;
-- the pending turns (always the physical top) are left out; `top`/`top_tok` are the physical ends.
local function header(h, owner)
  local f = redis.call('HMGET', h, 'owner', 'version', 'base', 'next', 'tok_base', 'tok_end', 'ttl',
    'pending', 'pending_until', 'pending_tokens', 'pending_session', 'pending_count')
  if not f[1] or f[1] ~= owner then
    return nil
  end
  local hd = {
    version = tonumber(f[2]), base = tonumber(f[3]), next = tonumber(f[4]),
    tok_base = tonumber(f[5]), tok_end = tonumber(f[6]), ttl = tonumber(f[7]),
    pending = nil, pending_until = tonumber(f[9] or 0) or 0, pending_session = f[11] == '1',
    pending_count = 0,
  }
  hd.top, hd.top_tok = hd.next, hd.tok_end
  if f[8] and f[8] ~= '' then
    hd.pending = f[8]
    hd.pending_count = tonumber(f[12] or 1) or 1
    hd.next = hd.next - hd.pending_count
    hd.tok_end = hd.tok_end - (tonumber(f[10]) or 0)
  end
  return hd
end

-- Remove the pending turns (their lease is over, or their call asks); the visible stack and the
-- version stay as they are. Returns the removed turns, top first. KEYS: header, turns,
-- prefix_sums, ids.
local function drop_pending(keys, hd)
  local raws = {}
  for i = 1, hd.pending_count do
    local raw = redis.call('RPOP', keys[2])
    redis.call('ZREM', keys[3], member(hd.top - i))
    redis.call('HDEL', keys[4], cjson.decode(raw).id)
    raws[#raws + 1] = raw
  end
  redis.call('HSET', keys[1], 'next', hd.next, 'tok_end', hd.tok_end, 'pending', '', 'pending_count', '')
  hd.top, hd.top_tok, hd.pending, hd.pending_count = hd.next, hd.tok_end, nil, 0
  return raws
end

-- A mutation first reaps a pending turn whose lease ran out (its call failed without undoing it).
local function reap(keys, hd, now_ms)
  if hd.pending and tonumber(now_ms) >= hd.pending_until then
    drop_pending(keys, hd)
  end
end

local function check_version(hd, expected)
  if expected ~= '' and tonumber(expected) ~= hd.version then
    return redis.error_reply('VERSION ' .. hd.version)
  end
  return nil
end

-- Add `sid` to the owner's index, newest last. The score is the creation time (ms), bumped
-- past the newest entry when it is not later (same millisecond, or a replica's clock behind):
-- ties would order by session id, not by creation.
local function index_session(idx, sid, now_ms, index_ttl)
  local score = tonumber(now_ms)
  local top = redis.call('ZREVRANGE', idx, 0, 0, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= score then
    score = tonumber(top[2]) + 1
  end
  redis.call('ZADD', idx, score, sid)
  redis.call('PEXPIRE', idx, tonumber(index_ttl) * 1000)
end

local function touch(keys, ttl)
  for _, k in ipairs(keys) do
    redis.call('PEXPIRE', k, ttl * 1000)
  end
end

-- Refresh the idle TTL, except of a pending session: it goes when its lease does.
local function keep(keys, hd)
  if not hd.pending_session then
    touch(keys, hd.ttl)
  end
end
