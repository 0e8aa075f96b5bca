-- Append turns to a call's journal. APPEND keeps a key's TTL, but would create a key without
-- one if the journal had expired or been erased meanwhile: no key is ever left without a TTL.
--   KEYS: session    ARGV: journal lines, ttl    -> the journal's size
local size = redis.call('APPEND', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return size
