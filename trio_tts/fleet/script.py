"""The one Lua script behind :class:`~trio_tts.RedisQuota`: every decision, atomically.

Think of a deli counter shared by every shop of a chain: a fixed number of servers (the
*capacity*), a ticket roll (the *queue*) and a rule that nobody is served out of ticket order.
Each customer must wave now and then (the *heartbeat*); one who stops waving is dropped — a
served customer after ``lease_ttl``, a ticket holder after the shorter ``waiter_ttl`` — so a
crashed process's slots and tickets come back by themselves.

Keys (one hash tag, so one quota lives in one Cluster slot)::

    {name}:cap     capacity (stored once: processes configured differently are refused)
    {name}:epoch   a random token written when the state is (re)created; a change tells the
                   processes that Redis lost its state (a restart without persistence)
    {name}:leases  ZSET lease id -> expiry (ms of Redis TIME)
    {name}:queue   ZSET waiter id -> ticket (FIFO order)
    {name}:qexp    ZSET waiter id -> expiry (ms of Redis TIME)
    {name}:seq     ticket counter

Every call first purges what expired, then *dispatches*: while a slot is free, the head of the
queue is granted (moved to ``leases``) and its process is told on its wake channel
(``PUBLISH``). Only then does the call act, so a free slot always goes to the oldest waiter: no
barging. A lease or waiter id is ``<holder>:<n>``; the holder part names the wake channel.
Time is Redis ``TIME`` only: no client clock is ever compared with another.

Ops (``ARGV[1]``): ``acquire id`` (grant now, or enqueue), ``try id`` (grant now or answer N),
``release id...`` (forget held or queued ids), ``beat (kind id)...`` (one batched renewal per
process: kind H = held, W = waiting; answers per id H/G(granted)/W/L(lost); with a changed
epoch, held ids are re-asserted while there is room), ``stat``, ``resize``.
Every reply starts ``{status, epoch, capacity}``; status MISMATCH means the stored capacity
differs from the caller's.
"""

from __future__ import annotations

__all__ = ["SCRIPT"]

SCRIPT = r"""
local K_CAP, K_EPOCH, K_LEASES, K_QUEUE, K_QEXP, K_SEQ =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local op, want, lease_ttl, waiter_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local their_epoch, nonce, wake = ARGV[5], ARGV[6], ARGV[7]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cap = tonumber(redis.call('GET', K_CAP))
if op == 'resize' or (cap == nil and want ~= '') then
  cap = tonumber(want)
  redis.call('SET', K_CAP, cap)
elseif cap == nil then
  return {'NOCAP', '', 0}
elseif want ~= '' and tonumber(want) ~= cap then
  return {'MISMATCH', '', cap}
end
local epoch = redis.call('GET', K_EPOCH)
if not epoch then
  epoch = nonce
  redis.call('SET', K_EPOCH, epoch)
end

-- Purge expired leases and waiters.
redis.call('ZREMRANGEBYSCORE', K_LEASES, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', K_QEXP, '-inf', now)
for _, id in ipairs(dead) do redis.call('ZREM', K_QUEUE, id) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', K_QEXP, '-inf', now) end

local function hold(id)
  redis.call('ZADD', K_LEASES, now + lease_ttl, id)
end

local function enqueue(id)
  redis.call('ZADD', K_QUEUE, redis.call('INCR', K_SEQ), id)
  redis.call('ZADD', K_QEXP, now + waiter_ttl, id)
end

local function dispatch()
  local free = cap - redis.call('ZCARD', K_LEASES)
  while free > 0 do
    local head = redis.call('ZRANGE', K_QUEUE, 0, 0)
    if #head == 0 then return end
    local id = head[1]
    redis.call('ZREM', K_QUEUE, id)
    redis.call('ZREM', K_QEXP, id)
    hold(id)
    redis.call('PUBLISH', wake .. string.match(id, '^[^:]*'), id)
    free = free - 1
  end
end

local out = {'OK', epoch, cap}

if op == 'acquire' or op == 'try' then
  local id = ARGV[8]
  dispatch()
  if redis.call('ZSCORE', K_LEASES, id) then
    out[1] = 'G'
  elseif redis.call('ZSCORE', K_QUEUE, id) then
    redis.call('ZADD', K_QEXP, now + waiter_ttl, id)
    out[1] = 'W'
  elseif redis.call('ZCARD', K_QUEUE) == 0 and redis.call('ZCARD', K_LEASES) < cap then
    hold(id)
    out[1] = 'G'
  elseif op == 'try' then
    out[1] = 'N'
  else
    enqueue(id)
    out[1] = 'W'
  end
elseif op == 'release' then
  for i = 8, #ARGV do
    redis.call('ZREM', K_LEASES, ARGV[i])
    redis.call('ZREM', K_QUEUE, ARGV[i])
    redis.call('ZREM', K_QEXP, ARGV[i])
  end
  dispatch()
elseif op == 'beat' then
  local state_lost = their_epoch ~= '' and their_epoch ~= epoch
  for i = 8, #ARGV, 2 do
    local kind, id = ARGV[i], ARGV[i + 1]
    local status
    if redis.call('ZSCORE', K_LEASES, id) then
      hold(id)
      status = (kind == 'H') and 'H' or 'G'
    elseif kind == 'W' then
      if redis.call('ZSCORE', K_QUEUE, id) then
        redis.call('ZADD', K_QEXP, now + waiter_ttl, id)
      else
        enqueue(id)
      end
      status = 'W'
    elseif state_lost and redis.call('ZCARD', K_LEASES) < cap then
      hold(id)
      status = 'H'
    else
      status = 'L'
    end
    out[#out + 1] = status
  end
  dispatch()
  for i = 8, #ARGV, 2 do
    local j = 4 + (i - 8) / 2
    if out[j] == 'W' and redis.call('ZSCORE', K_LEASES, ARGV[i + 1]) then out[j] = 'G' end
  end
elseif op == 'stat' or op == 'resize' then
  dispatch()
  out[4] = redis.call('ZCARD', K_LEASES)
  out[5] = redis.call('ZCARD', K_QUEUE)
end
return out
"""
