-- The health page's random sample, in one command: the database's size, keys drawn at
-- random (RANDOMKEY, with replacement) counted by kind here, and the memory of the first
-- callers drawn. Only the counts cross the wire, never the keys: one round trip whatever
-- the sample's size (4,000 RANDOMKEY pipelined cost ~70 ms at 10,000 callers). It only
-- reads. On a cluster the console runs it on each primary (its own keys, so every key it
-- measures is local: a caller's keys share one hash tag).
-- The kinds are those of store/keys.py Keys.kind, from the key's name alone
-- (tests/test_console_health.py checks that both agree for every kind).
--   KEYS: none    ARGV: prefix, keys to draw, callers to measure (MEMORY USAGE)
--   -> {DBSIZE, keys drawn, {kind, count, kind, count, ...}, {bytes of a caller, ...}}
local prefix = ARGV[1] .. ':'
local draws = tonumber(ARGV[2])
local measure = tonumber(ARGV[3])
local size = redis.call('DBSIZE')
if size == 0 then
  return {0, 0, {}, {}}
end

local function starts(s, head)
  return string.sub(s, 1, #head) == head
end

local function ends(s, tail)
  return #s >= #tail and string.sub(s, -#tail) == tail
end

local exact = {
  ['sessions:open'] = 'open',
  ['maintenance'] = 'maintenance',
  ['versions'] = 'versions',
  ['erasure:requests'] = 'requests',
  ['trunk_regions'] = 'regions',
}
local user_suffixes = {
  {':profile:unreadable', 'unreadable'},
  {':profile', 'profile'},
  {':sessions', 'sessions'},
  {':calls', 'calls'},
  {':erased', 'erased'},
}

local function kind(key)
  if not starts(key, prefix) then
    return 'other'
  end
  local rest = string.sub(key, #prefix + 1)
  if starts(rest, 'phone:{') then
    return ends(rest, ':unreadable') and 'unreadable' or 'phone'
  end
  if starts(rest, 'session:{') then
    return 'session'
  end
  if exact[rest] then
    return exact[rest]
  end
  if starts(rest, 'user:{') then
    for _, pair in ipairs(user_suffixes) do
      if ends(rest, pair[1]) then
        return pair[2]
      end
    end
  end
  return 'other'
end

local counts, drawn = {}, 0
local users, seen = {}, {}
for _ = 1, draws do
  local key = redis.call('RANDOMKEY')
  if not key then
    break
  end
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
return {size, drawn, flat, sizes}
