-- Mark a user erased: the moment, on the server's clock (TIME, Unix ms), kept `ttl` seconds.
-- The save of a call that began at or before it is refused (save_call.lua), and a call's
-- beginning is the server's time of its lookup (lookup.lua): the order of the two is the
-- order Redis ran them in, whatever the clocks of the machines that asked.
--   KEYS: erased    ARGV: ttl (s)    -> the time written (ms)
local t = redis.call('TIME')
local now_ms = string.format('%s%03d', t[1], math.floor(tonumber(t[2]) / 1000))
redis.call('SET', KEYS[1], now_ms, 'EX', ARGV[1])
return now_ms
