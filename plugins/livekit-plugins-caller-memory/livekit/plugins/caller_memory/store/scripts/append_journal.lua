-- Append turns to a call's journal, if it is still there and has room. A journal that is gone
-- was saved, erased (forget) or expired: it is not made again (an erased caller must not come
-- back). A journal is bounded: turns past its size are kept by the worker and saved at
-- hang-up, not journaled (a runaway call cannot grow a key without end).
-- A key that holds the saved call is gone too: a write the network held back (a reply lost, a
-- turn sent again) must not land on the call's record after its save and spoil it.
--   KEYS: session    ARGV: journal lines, largest journal (bytes), a journal's first bytes
--   -> the journal's size, -1 when it is gone, -2 when it is full
local size = redis.call('STRLEN', KEYS[1])
if size == 0 or redis.call('GETRANGE', KEYS[1], 0, #ARGV[3] - 1) ~= ARGV[3] then
  return -1
end
if size + #ARGV[1] > tonumber(ARGV[2]) then
  return -2
end
return redis.call('APPEND', KEYS[1], ARGV[1])
