-- Append turns to a call's journal, if it is still there. A journal that is gone was saved,
-- erased (forget) or expired: it is not made again (an erased caller must not come back).
--   KEYS: session    ARGV: journal lines    -> the journal's size, or -1 when it is gone
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call('APPEND', KEYS[1], ARGV[1])
