-- Add a member to a sorted set scored with the server's clock (TIME: Unix seconds, to the
-- millisecond) and renew the set's TTL; with a second key, first set it to a value with the
-- same TTL (a call's journal as it opens). Times that workers on other machines compare (a
-- call's heartbeat, an erasure request's age) come from this one clock, never a worker's own:
-- a worker whose clock is hours off neither orphans a live call nor hides a dead one.
--   KEYS: sorted set [, string key]    ARGV: member, ttl (s) [, value]
--   -> the score written
local t = redis.call('TIME')
local now = string.format('%s.%03d', t[1], math.floor(tonumber(t[2]) / 1000))
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return now
