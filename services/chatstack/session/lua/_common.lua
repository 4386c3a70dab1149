-- Shared helpers, prepended to every chatstack session script.
-- Keys of one session share the hash tag {sid}; the header hash holds:
--   owner, created_ms, updated_ms, ttl, sys, sys_tokens, meta (JSON), version,
--   base (absolute position of the bottom turn), next (one past the top),
--   tok_base (token prefix sum before `base`), tok_end (prefix sum before `next`),
--   last_op, last_result (idempotency of retried pops).
local function member(pos)
  return string.format('%015d', pos)
end

local function header(h, owner)
  local f = redis.call('HMGET', h, 'owner', 'version', 'base', 'next', 'tok_base', 'tok_end', 'ttl')
  if not f[1] or f[1] ~= owner then
    return nil
  end
  return {
    version = tonumber(f[2]), base = tonumber(f[3]), next = tonumber(f[4]),
    tok_base = tonumber(f[5]), tok_end = tonumber(f[6]), ttl = tonumber(f[7]),
  }
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
