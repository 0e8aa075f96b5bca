-- Re-key a caller found under a previous phone-hash secret: write their profile, session list
-- and index of calls under their new id (the number's hash under the current secret), and map
-- the number to it. No key name then derives from the old secret, which can be dropped. The
-- keys share the new {hash} tag (one slot); the old keys are deleted next, in their own slot.
-- When the new profile or session list exists, another call moved the caller first: only the
-- mapping is set.
--   KEYS: phone, profile, sessions, calls, profile:unreadable (all under the new id)
--   ARGV: new id, profile ttl, session ttl, profile ('' = none), unreadable ('' = none),
--         number of session ids n, the n session ids, then (expiry, session id) pairs
--   -> 1 when moved, 0 when it had been
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[2])
end
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[5], ARGV[5], 'EX', ARGV[2])
end
local n = tonumber(ARGV[6])
if n > 0 then
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 7, 6 + n))
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
local i = 7 + n
if i <= #ARGV then
  redis.call('ZADD', KEYS[4], unpack(ARGV, i, #ARGV))
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
return 1
