-- KEYS: header, turns, prefix_sums, ids
-- ARGV: owner, turn_id, metadata_json (object), max_entries, max_bytes
-- Merges the entries into the turn's metadata; the version is unchanged. Returns {base, turn_json}.
local hd = header(KEYS[1], ARGV[1])
if not hd then return redis.error_reply('NOTFOUND') end
local pos = redis.call('HGET', KEYS[4], ARGV[2])
if not pos or tonumber(pos) >= hd.next then return redis.error_reply('NOTURN') end  -- pending
local index = tonumber(pos) - hd.base
local turn = cjson.decode(redis.call('LINDEX', KEYS[2], index))
local meta = {}
if type(turn.m) == 'table' then meta = turn.m end
for k, v in pairs(cjson.decode(ARGV[3])) do meta[k] = v end
local entries, bytes = 0, 0
for k, v in pairs(meta) do
  entries = entries + 1
  bytes = bytes + #k + #v
end
if entries > tonumber(ARGV[4]) or bytes > tonumber(ARGV[5]) then
  return redis.error_reply('METADATA ' .. entries .. ' ' .. bytes)
end
turn.m = meta  -- at least one entry (the store refuses an empty annotation): encodes as an object
local raw = cjson.encode(turn)
redis.call('LSET', KEYS[2], index, raw)
keep(KEYS, hd)
return {hd.base, raw}
