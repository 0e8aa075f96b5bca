-- The end-of-call save: a compare-and-set of the profile, then every write of the call with
-- its TTL, all or nothing. One command per save (per-command billing), and nothing is
-- half-written if the worker dies. On a cluster a script touches one slot: it gets the
-- caller's keys only, and the session data, the calls in progress, the saves by version and
-- the phone mapping are written next to it (KEYS[6..9] absent).
--   KEYS: profile, sessions, profile:unreadable, calls, erased
--         [, session, calls in progress, saves by version[, phone]]
--   ARGV: expected profile ('' = none), new profile, session id, session json,
--         profile ttl, session ttl, sessions kept, set aside ('1' / '0'),
--         when the call began (Unix ms, the server's clock: lookup.lua), unused (was the
--         worker's clock), largest profile (bytes), this worker's version
--   -> {1, now (Unix s)} when written, {0, current profile} when the profile changed
--      meanwhile, {2} when the caller was erased after the call began: nothing is written
-- Every time compared here is the server's (TIME), never a worker's: the index of calls is
-- trimmed by it, and the erasure mark was written by it (mark_erased.lua).
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local erased = redis.call('GET', KEYS[5])
if erased then
  local at = tonumber(erased)
  if at and at > now_ms then
    -- Ahead of the server: written by an eraser's own clock (0.2.0 and before did). When
    -- it was written is told by its TTL, which was the profile TTL then: a clock a year
    -- ahead must not refuse the caller's calls until the mark expires.
    at = math.min(now_ms, now_ms - (tonumber(ARGV[5]) * 1000 - redis.call('PTTL', KEYS[5])))
  end
  if not at or at >= tonumber(ARGV[9]) then
    return {2}
  end
end
local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'string' and kind ~= 'none' then
  -- not a profile at all: keep it aside, as an unreadable one is
  redis.call('RENAME', KEYS[1], KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
if kind == 'string' and redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[11]) then
  -- larger than any profile: kept aside, never sent back over the network to be compared
  redis.call('RENAME', KEYS[1], KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
kind = redis.call('TYPE', KEYS[2]).ok
if kind ~= 'list' and kind ~= 'none' then
  redis.call('DEL', KEYS[2])  -- only session ids, which the profile and sessions also hold
end
kind = redis.call('TYPE', KEYS[4]).ok
if kind ~= 'zset' and kind ~= 'none' then
  redis.call('DEL', KEYS[4])
end
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then
  return {0, current or ''}
end
if ARGV[8] == '1' and current then
  redis.call('SET', KEYS[3], current, 'EX', ARGV[5])
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[5])
if not redis.call('LPOS', KEYS[2], ARGV[3]) then
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[7]), -1)
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
-- Every call whose data is kept, until that data expires: what erasure and export reach.
redis.call('ZADD', KEYS[4], string.format('%.3f', now_ms / 1000 + tonumber(ARGV[6])), ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%.3f', now_ms / 1000))
redis.call('EXPIRE', KEYS[4], ARGV[6])
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[4], 'EX', ARGV[6])
  redis.call('ZREM', KEYS[7], ARGV[3])
  -- Which version saved (one small key for the whole prefix): `caller-memory stats` shows
  -- a fleet running two versions.
  redis.call('ZINCRBY', KEYS[8], 1, 'saves:' .. ARGV[12])
  redis.call('ZADD', KEYS[8], t[1], 'last:' .. ARGV[12])
  redis.call('EXPIRE', KEYS[8], ARGV[5])
end
if KEYS[9] then
  redis.call('EXPIRE', KEYS[9], ARGV[5])
end
return {1, t[1]}
