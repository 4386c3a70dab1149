-- KEYS: header, turns, prefix_sums, ids, owner_index, session_events, feedback, preference_stream
-- ARGV: owner, expected_version, sid
-- Deletes the session, its turns and its preference events.
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
local err = check_version(hd, ARGV[2])
if err then return err end
local events = redis.call('SMEMBERS', KEYS[6])
for i = 1, #events, 500 do
  redis.call('XDEL', KEYS[8], unpack(events, i, math.min(i + 499, #events)))
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7])
redis.call('ZREM', KEYS[5], ARGV[3])
return hd.version
