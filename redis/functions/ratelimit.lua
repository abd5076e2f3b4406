#!lua name=ratelimit
-- Rate limiting as a Redis Function library, loaded by the deployment as the operator
-- (from the host by `up` and the fixtures, else the `<name>-functions` job; the cluster
-- job in a Cluster). Applications call these with FCALL
-- instead of sending their own scripts: access.app_eval is off by default, because a
-- script's Lua memory is outside maxmemory and one EVAL can exhaust a node.
-- Both read the server's clock (TIME), so clients need no synchronised time.

-- FCALL token_bucket 1 <key> <capacity> <refill_per_second>
-- The seed's token bucket: 1 if a token was taken, 0 if the bucket is empty.
-- A finite number in [low, high], or nil: tonumber() also reads 'nan' and 'inf', and
-- every comparison with NaN is false, so a plain range check would let it through.
local function bounded(text, low, high)
  local value = tonumber(text)
  if value == nil or value ~= value or value < low or value > high then
    return nil
  end
  return value
end

local function token_bucket(keys, args)
  local capacity = bounded(args[1], 1, 1e9)
  local refill = bounded(args[2], 0, 1e9)
  if not capacity or not refill then
    return redis.error_reply('ERR token_bucket needs 1 <= capacity <= 1e9 and 0 <= refill_per_second <= 1e9')
  end
  local time = redis.call('TIME')
  local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
  local bucket = redis.call('HMGET', keys[1], 'tokens', 'last_refill')
  local tokens = tonumber(bucket[1]) or capacity
  local last = tonumber(bucket[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - last) * refill)
  local allowed = 0
  if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
  end
  redis.call('HSET', keys[1], 'tokens', string.format('%.6f', tokens),
    'last_refill', string.format('%.6f', now))
  -- A bucket idle long enough to be full again holds no information: let it expire.
  local refill_ms = math.ceil(capacity / math.max(refill, 0.001) * 1000)
  redis.call('PEXPIRE', keys[1], math.min(refill_ms, 86400000) + 1000)
  return allowed
end

-- FCALL sliding_window 1 <key> <limit> <window_ms>
-- 1 if fewer than <limit> requests were allowed in the last <window_ms>, else 0.
local function sliding_window(keys, args)
  local limit = bounded(args[1], 1, 100000)
  local window = bounded(args[2], 1, 86400000)
  if not limit or not window then
    return redis.error_reply('ERR sliding_window needs 1 <= limit <= 100000 and 1 <= window_ms <= 86400000')
  end
  local time = redis.call('TIME')
  local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local now_ms = math.floor(now_us / 1000)
  redis.call('ZREMRANGEBYSCORE', keys[1], '-inf', now_ms - window)
  local count = redis.call('ZCARD', keys[1])
  if count >= limit then
    return 0
  end
  redis.call('ZADD', keys[1], now_ms, string.format('%.0f-%d', now_us, count))
  redis.call('PEXPIRE', keys[1], window)
  return 1
end

redis.register_function('token_bucket', token_bucket)
redis.register_function('sliding_window', sliding_window)
