-- Remove the identity a call minted for a new caller who then declined to be remembered
-- (or asked not to be): the phone mapping, if it still names that id and no call of the
-- caller was saved meanwhile. The three keys share the caller's {hash} tag.
--   KEYS: phone, profile, sessions    ARGV: the minted id    -> 1 when removed
if redis.call('GET', KEYS[1]) == ARGV[1]
    and redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  return redis.call('DEL', KEYS[1])
end
return 0
