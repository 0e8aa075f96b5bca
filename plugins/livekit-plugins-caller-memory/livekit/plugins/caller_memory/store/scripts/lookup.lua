-- The call-start lookup in one command (one round trip, one billed command on Upstash):
-- name or mint the caller's id, read the profile, and renew the three keys' TTLs, so a
-- caller who keeps calling keeps their memory. The keys share the caller's {hash} tag: one
-- slot on a cluster.
--   KEYS: phone, profile, sessions, phone set aside (phone .. ':unreadable')
--   ARGV: the id to mint ('' = do not mint), ttl (seconds), largest profile (bytes)
--   -> {user id, or false when unknown (and minted now), profile or false or {'err'},
--       1 when the session list exists, 1 when a phone key of the wrong type was set aside,
--       now (Unix ms)}
-- The session list is not read: its ids are the profile's calls' (get_session_ids reads it),
-- and each command a script calls costs it a few microseconds, a list's reply the most.
-- "Now" is the server's clock (TIME): the call's beginning, which an erasure is compared
-- with (mark_erased.lua, save_call.lua), whatever the worker's own clock says.
-- A profile of the wrong type, or larger than any caller memory writes, comes back as
-- {'err'} instead of failing the lookup (and without sending a huge value over): the call
-- goes on, and the save sets the bad value aside. A phone key of the wrong type, or whose
-- value is no user id (8-128 letters, digits, '_' or '-'), is set aside here (it names no
-- one), so the caller gets an identity.
-- A script runs alone: of two first calls from one number at once, exactly one mints the id,
-- and the other finds it.
local aside = 0
local found = redis.pcall('GETEX', KEYS[1], 'EX', ARGV[2])
if type(found) == 'table' then
  -- READONLY, OOM, NOPERM...: the worker falls back to plain reads. WRONGTYPE: another
  -- program's key, set aside.
  if not string.find(found.err, '^WRONGTYPE') then return found end
  aside = 1
elseif found and (#found < 8 or #found > 128 or string.find(found, '[^%w_%-]')) then
  aside = 1  -- another program's string, or bytes written by hand
end
if aside == 1 then
  redis.call('RENAME', KEYS[1], KEYS[4])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
  aside = 1
  found = false
end
if not found and ARGV[1] ~= '' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
local profile
local size = redis.pcall('STRLEN', KEYS[2])
if type(size) == 'number' and size > tonumber(ARGV[3]) then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  profile = {'err'}
else
  profile = redis.pcall('GETEX', KEYS[2], 'EX', ARGV[2])
  if type(profile) == 'table' and profile.err then profile = {'err'} end
end
local sessions = redis.call('EXPIRE', KEYS[3], ARGV[2])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {found, profile, sessions, aside, now_ms}
