-- The call-start lookup in one command (one round trip, one billed command on Upstash):
-- name or mint the caller's id, read the profile and the session list, and renew the three
-- keys' TTLs, so a caller who keeps calling keeps their memory. The three keys share the
-- caller's {hash} tag: one slot on a cluster.
--   KEYS: phone, profile, sessions
--   ARGV: the id to mint ('' = do not mint), ttl (seconds)
--   -> {user id, or false when unknown (and minted now), profile or false or {'err'},
--       session ids}
-- A profile or session list of the wrong type comes back as {'err'} / {} instead of failing
-- the lookup: the call goes on, and the save sets the bad value aside.
-- A script runs alone: of two first calls from one number at once, exactly one mints the id,
-- and the other finds it.
local found = redis.call('GETEX', KEYS[1], 'EX', ARGV[2])
if not found and ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
local profile = redis.pcall('GETEX', KEYS[2], 'EX', ARGV[2])
local sessions = redis.pcall('LRANGE', KEYS[3], 0, -1)
redis.pcall('EXPIRE', KEYS[3], ARGV[2])
if type(profile) == 'table' and profile.err then profile = {'err'} end
if type(sessions) == 'table' and sessions.err then sessions = {} end
return {found, profile, sessions}
