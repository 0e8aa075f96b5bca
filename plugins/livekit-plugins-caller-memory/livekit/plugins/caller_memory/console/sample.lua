-- The health page's random sample, in one command: the database's size, keys drawn at
-- random (RANDOMKEY, with replacement) counted by kind here, and the memory of the first
-- callers drawn. Only the counts cross the wire, never the keys: one round trip whatever
-- the sample's size (4,000 RANDOMKEY pipelined took ~70 ms at 10,000 callers). It only
-- reads. On a cluster the console runs it on each primary (its own keys, so every key it
-- measures is local: a caller's keys share one hash tag).
-- The kinds are those of store/keys.py Keys.kind, from the key's name alone
-- (tests/test_console_health.py checks that both agree for every kind). Drawing and
-- counting take Redis about 2-3 us a key (10 ms for 4,000 on this project's 2-core machine):
-- other clients wait that long, once per MEMORY_CONSOLE_STATS_TTL_S.
-- A database of no more keys than the draw is counted whole instead (SCAN, each key once):
-- RANDOMKEY favours some keys over others (it picks among a few neighbours in the hash
-- table), which evens out over thousands of keys of a kind but not over a few dozen, where
-- the margins would not hold. Counting every key then costs no more than the draw.
--   KEYS: none    ARGV: prefix, keys to draw, callers to measure (MEMORY USAGE)
--   -> {DBSIZE, keys drawn or counted, {kind, count, kind, count, ...}, {bytes of a caller,
--       ...}, 1 when every key was counted}
local prefix = ARGV[1] .. ':'
local draws = tonumber(ARGV[2])
local measure = tonumber(ARGV[3])
local size = redis.call('DBSIZE')
if size == 0 then
  return {0, 0, {}, {}, 1}
end

-- Classified with anchored patterns from the prefix's end (no substring made: a draw costs
-- little more than its RANDOMKEY).
local from = #prefix + 1
local exact = {
  ['sessions:open'] = 'open',
  ['maintenance'] = 'maintenance',
  ['versions'] = 'versions',
  ['erasure:requests'] = 'requests',
  ['trunk_regions'] = 'regions',
}
local user_suffixes = {  -- the most common first; '$': the name ends so
  {':profile$', 'profile'},
  {':sessions$', 'sessions'},
  {':calls$', 'calls'},
  {':profile:unreadable$', 'unreadable'},
  {':erased$', 'erased'},
}

local function kind(key)
  if string.find(key, prefix, 1, true) ~= 1 then
    return 'other'
  end
  if string.find(key, '^user:{', from) then
    for _, rule in ipairs(user_suffixes) do
      if string.find(key, rule[1], from + 6) then
        return rule[2]
      end
    end
    return 'other'
  end
  if string.find(key, '^session:{', from) then
    return 'session'
  end
  if string.find(key, '^phone:{', from) then
    return string.find(key, ':unreadable$', from + 7) and 'unreadable' or 'phone'
  end
  return exact[string.sub(key, from)] or 'other'
end

local counts, drawn = {}, 0
local users, seen = {}, {}
local function tally(key)
  drawn = drawn + 1
  local k = kind(key)
  counts[k] = (counts[k] or 0) + 1
  if k == 'profile' and #users < measure then
    local user = string.match(key, '{([^}]*)}')
    if user and not seen[user] then
      seen[user] = true
      users[#users + 1] = user
    end
  end
end

local whole = size <= draws
if whole then
  local cursor, counted = '0', {}
  repeat
    local page = redis.call('SCAN', cursor, 'COUNT', 1000)
    cursor = page[1]
    for _, key in ipairs(page[2]) do
      if not counted[key] then  -- SCAN may return a key twice
        counted[key] = true
        tally(key)
      end
    end
  until cursor == '0'
else
  for _ = 1, draws do
    local key = redis.call('RANDOMKEY')
    if not key then
      break
    end
    tally(key)
  end
end

local flat = {}
for k, n in pairs(counts) do
  flat[#flat + 1] = k
  flat[#flat + 1] = n
end

-- A caller's phone key is named by their user id (their phone hash): store/keys.py.
local sizes = {}
for _, user in ipairs(users) do
  local total = 0
  for _, key in ipairs({
    prefix .. 'phone:{' .. user .. '}',
    prefix .. 'user:{' .. user .. '}:profile',
    prefix .. 'user:{' .. user .. '}:sessions',
  }) do
    total = total + (redis.call('MEMORY', 'USAGE', key) or 0)
  end
  sizes[#sizes + 1] = total
end
return {size, drawn, flat, sizes, whole and 1 or 0}
