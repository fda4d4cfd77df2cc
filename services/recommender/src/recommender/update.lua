-- Applies one batch of events to the recommender's state, atomically with the batch's
-- Kafka offsets (so a replay after a crash applies nothing twice).
-- An event at an offset below its partition's stored offset was applied before: skipped, so
-- two consumers of one partition (a rebalance in flight) cannot count an event twice.
-- ARGV[1]: JSON {"events": [[time, user, session, type, product, partition, offset,
--                             category or false], ...],
--               "offsets": {"topic:partition": next_offset, ...}}
-- ARGV[2]: key prefix, ARGV[3]: trending half-life (s), ARGV[4]: session gap (s),
-- ARGV[5]: user history length, ARGV[6]: user TTL (s), ARGV[7]: neighbours kept.
local batch = cjson.decode(ARGV[1])
local prefix = ARGV[2]
local tau = tonumber(ARGV[3]) / math.log(2)
local gap = tonumber(ARGV[4])
local history = tonumber(ARGV[5])
local user_ttl = tonumber(ARGV[6])
local keep = tonumber(ARGV[7])
local trending = prefix .. 'trending'
local t0_key = prefix .. 'trending:t0'
local t0 = tonumber(redis.call('GET', t0_key) or '-1')
local weights = {product_view = 1, add_to_cart = 3}

local function pair(kind, a, b)
  if a == b then return end
  local ka = prefix .. kind .. ':' .. a
  local kb = prefix .. kind .. ':' .. b
  redis.call('ZINCRBY', ka, 1, b)
  redis.call('ZINCRBY', kb, 1, a)
  for _, k in ipairs({ka, kb}) do
    if redis.call('ZCARD', k) > keep * 1.5 then
      redis.call('ZREMRANGEBYRANK', k, 0, -(keep + 1))
    end
  end
end

local function remember(key, product, length, ttl)
  local seen = redis.call('LRANGE', key, 0, length - 1)
  redis.call('LREM', key, 0, product)
  redis.call('LPUSH', key, product)
  redis.call('LTRIM', key, 0, length - 1)
  redis.call('EXPIRE', key, ttl)
  return seen
end

local offsets_key = prefix .. 'offsets'
local applied_until = {}
local function already_applied(partition, offset)
  if applied_until[partition] == nil then
    applied_until[partition] = tonumber(redis.call('HGET', offsets_key, partition) or '-1')
  end
  return offset < applied_until[partition]
end

local applied = 0
for _, e in ipairs(batch['events']) do
  local t, user, session, kind, product, category = e[1], e[2], e[3], e[4], e[5], e[8]
  local w = weights[kind]
  if w and product and not already_applied(e[6], e[7]) then
    applied = applied + 1
    -- Forward decay: weight exp((t - t0) / tau); ranks are those of the decayed scores.
    if t0 < 0 then t0 = t; redis.call('SET', t0_key, t0) end
    if (t - t0) / tau > 40 then
      -- Rebase before the weights grow too large: scale every score to the new origin.
      local scale = math.exp((t0 - t) / tau)
      redis.call('ZUNIONSTORE', trending, 1, trending, 'WEIGHTS', scale)
      redis.call('ZREMRANGEBYSCORE', trending, '-inf', 1e-6)
      for _, c in ipairs(redis.call('SMEMBERS', prefix .. 'categories')) do
        local per_category = prefix .. 'category:' .. c
        redis.call('ZUNIONSTORE', per_category, 1, per_category, 'WEIGHTS', scale)
        redis.call('ZREMRANGEBYSCORE', per_category, '-inf', 1e-6)
      end
      t0 = t
      redis.call('SET', t0_key, t0)
    end
    local weight = w * math.exp((t - t0) / tau)
    redis.call('ZINCRBY', trending, weight, product)
    -- Undecayed counts: how common a product is, to discount co-occurrence with it.
    redis.call('ZINCRBY', prefix .. 'popularity', w, product)
    if category then
      local per_category = prefix .. 'category:' .. category
      redis.call('ZINCRBY', per_category, weight, product)
      redis.call('SADD', prefix .. 'categories', category)
      local tastes = prefix .. 'user:' .. user .. ':categories'
      redis.call('ZINCRBY', tastes, w, category)
      redis.call('EXPIRE', tastes, user_ttl)
    end
    if kind == 'product_view' then
      local seen = remember(prefix .. 'session:' .. session .. ':views', product, 10, gap)
      for _, other in ipairs(seen) do pair('coview', product, other) end
      remember(prefix .. 'user:' .. user .. ':views', product, history, user_ttl)
    else
      local cart = remember(prefix .. 'session:' .. session .. ':cart', product, 20, gap)
      for _, other in ipairs(cart) do pair('cobuy', product, other) end
    end
  end
end
for partition, offset in pairs(batch['offsets']) do
  local stored = tonumber(redis.call('HGET', offsets_key, partition) or '-1')
  if offset > stored then redis.call('HSET', offsets_key, partition, offset) end
end
return applied
