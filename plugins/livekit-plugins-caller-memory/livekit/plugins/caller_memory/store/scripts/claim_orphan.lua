-- Claim an orphaned call by leasing it: its score in the calls in progress (its worker's last
-- heartbeat) moves to the end of the lease, if it has not beaten since the threshold and no one
-- holds it. One claimer wins; if that process dies, the lease runs out and another recovers it.
--   KEYS: calls in progress    ARGV: session id, beaten before (s), lease end (s)
--   -> 1 when claimed
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
