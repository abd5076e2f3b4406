#!lua name=ratelimit
-- Rate limiting as a Redis Function library, loaded by the deployment as the operator
-- (`<name>-functions` job, or the cluster job). Applications call these with FCALL
-- instead of sending their own scripts: access.app_eval is off by default, because a
-- script's Lua memory is outside maxmemory and one EVAL can exhaust a node.
-- Both read the server's clock (TIME), so clients need no synchronised time.

-- FCALL token_bucket 1 <key> <capacity> <refill_per_second>
-- The seed's token bucket: 1 if a token was taken, 0 if the bucket is empty.
local function token_bucket(keys, args)
  local capacity = tonumber(args[1])
  local refill = tonumber(args[2])
  if not capacity or not refill or capacity < 1 or refill < 0 then
    return redis.error_reply('ERR token_bucket needs capacity >= 1 and refill_per_second >= 0')
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
  local limit = tonumber(args[1])
  local window = tonumber(args[2])
  if not limit or not window or limit < 1 or limit > 100000 or window < 1 then
    return redis.error_reply('ERR sliding_window needs 1 <= limit <= 100000 and window_ms >= 1')
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
