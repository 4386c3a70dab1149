-- KEYS: header, stream, session_events (set of its stream ids), feedback (hash turn_id -> id)
-- ARGV: owner, session_id, kind, turn_id, payload, max_events, retention_ms
-- Appends an event about the caller's session to the deployment's stream (trimmed to about
-- max_events entries and retention_ms); a feedback event replaces the session's earlier feedback
-- on the same turn. Returns {id, replaced_id or ''}.
if not header(KEYS[1], ARGV[1]) then return redis.error_reply('NOTFOUND') end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
                      'k', ARGV[3], 'o', ARGV[1], 's', ARGV[2], 'e', ARGV[5])
local retention = tonumber(ARGV[7])
local now_ms = tonumber(string.match(id, '^(%d+)'))
redis.call('XTRIM', KEYS[2], 'MINID', '~', tostring(now_ms - retention))
redis.call('SADD', KEYS[3], id)
redis.call('PEXPIRE', KEYS[3], retention)
local replaced = ''
if ARGV[3] == 'feedback' then
  local old = redis.call('HGET', KEYS[4], ARGV[4])
  if old then
    redis.call('XDEL', KEYS[2], old)
    redis.call('SREM', KEYS[3], old)
    replaced = old
  end
  redis.call('HSET', KEYS[4], ARGV[4], id)
  redis.call('PEXPIRE', KEYS[4], retention)
end
return {id, replaced}
