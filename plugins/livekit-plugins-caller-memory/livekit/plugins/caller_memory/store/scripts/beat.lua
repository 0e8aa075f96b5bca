-- A worker's heartbeat for its calls in progress: each call still listed is scored with the
-- server's clock (TIME: Unix seconds, to the millisecond), never moved back (ZADD XX GT: a
-- lease in the future stays). The worker's own clock plays no part: one hours behind would
-- look dead to the others, one days ahead would never look dead.
--   KEYS: calls in progress    ARGV: session ids    -> how many moved
local t = redis.call('TIME')
local now = string.format('%s.%03d', t[1], math.floor(tonumber(t[2]) / 1000))
local args = {'XX', 'GT', 'CH'}
for i = 1, #ARGV do
  args[#args + 1] = now
  args[#args + 1] = ARGV[i]
end
return redis.call('ZADD', KEYS[1], unpack(args))
