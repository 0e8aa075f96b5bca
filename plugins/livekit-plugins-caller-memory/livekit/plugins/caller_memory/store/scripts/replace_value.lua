-- Compare-and-set of one value, its TTL kept: a profile changed outside a call's save (a
-- withdrawn consent). The caller's other keys are left alone.
--   KEYS: the key    ARGV: the value expected, the new value    -> 1 when replaced
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
