-- Claim orphaned calls by leasing them: a call in progress whose score (its worker's last
-- heartbeat) is at least `idle` old moves to the end of the lease, so no one else claims it;
-- if the claimer dies, the lease runs out and another recovers it. A script runs alone: of two
-- claimers, one gets each call. "Old" is measured on the server's clock (TIME), which wrote
-- the heartbeats too (beat.lua, add_now.lua): the claimer's own clock plays no part.
--   KEYS: calls in progress    ARGV: idle (ms), lease (ms), most calls to claim
--   -> the session ids claimed
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local before = string.format('%.3f', (now_ms - tonumber(ARGV[1])) / 1000)
local lease_end = string.format('%.3f', (now_ms + tonumber(ARGV[2])) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', before, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], lease_end, id)
end
return ids
