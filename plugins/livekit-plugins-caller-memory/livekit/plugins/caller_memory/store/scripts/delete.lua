-- Delete keys at once, and say which existed: an erasure's deletes. A script, not a MULTI
-- transaction: a full Redis (maxmemory, noeviction) refuses every command queued in a MULTI,
-- but runs a script whose commands free memory (DEL).
--   KEYS: the keys (one slot on a cluster)    -> the positions (1-based) of those deleted
local deleted = {}
for i, key in ipairs(KEYS) do
  if redis.call('DEL', key) == 1 then deleted[#deleted + 1] = i end
end
return deleted
