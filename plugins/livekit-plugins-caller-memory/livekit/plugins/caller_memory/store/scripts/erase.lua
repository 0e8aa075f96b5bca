-- An erasure, in one slot, at once: mark the users erased, then delete their keys. No lookup
-- runs between the two (a call that began after the mark must never read the memory it
-- erases), and a save of a call that began before the mark is refused by it (save_call.lua).
-- The mark is the server's clock (TIME, Unix ms), as mark_erased.lua writes it. A full Redis
-- (maxmemory, noeviction) refuses the first SET, before anything is deleted: the worker runs
-- the script again flagged allow-oom (Redis 7.0+, Valkey), and where that is refused too
-- (6.2), deletes first and marks after (delete.lua, mark_erased.lua).
--   KEYS: the users' erased marks (ARGV[1] of them), then the keys to delete
--   ARGV: how many marks, ttl of a mark (s)
--   -> the positions (1-based, among the keys to delete) of those that existed
local marks = tonumber(ARGV[1])
if marks > 0 then
  local t = redis.call('TIME')
  local now_ms = string.format('%s%03d', t[1], math.floor(tonumber(t[2]) / 1000))
  for i = 1, marks do
    redis.call('SET', KEYS[i], now_ms, 'EX', ARGV[2])
  end
end
local deleted = {}
for i = marks + 1, #KEYS do
  if redis.call('DEL', KEYS[i]) == 1 then deleted[#deleted + 1] = i - marks end
end
return deleted
