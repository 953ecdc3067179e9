"""The one Lua script behind :class:`~trio_tts.RedisQuota`: every decision, atomically.

Think of a deli counter shared by every shop of a chain: a fixed number of servers (the
*capacity*), a ticket roll (the *queue*) and a rule that nobody is served out of ticket order.
Each customer must wave now and then (the *heartbeat*); one who stops waving is dropped — a
served customer after ``lease_ttl``, a ticket holder after the shorter ``waiter_ttl`` — so a
crashed process's slots and tickets come back by themselves.

Keys (one hash tag, so one quota lives in one Cluster slot)::

    {name}:cap     capacity (stored once: processes configured differently are refused)
    {name}:epoch   a token written when the state is (re)created: a change tells the
                   processes that their leases may be unknown here
    {name}:run     the run id of the Redis instance that last wrote the state
    {name}:guard   end of the restart guard (ms of Redis TIME)
    {name}:leases  ZSET lease id -> expiry (ms of Redis TIME)
    {name}:queue   ZSET waiter id -> ticket (FIFO order)
    {name}:qexp    ZSET waiter id -> expiry (ms of Redis TIME)
    {name}:seq     ticket counter

**The restart guard.** A Redis that restarted without persistence (or a replica promoted
after a failover, or a restart from a stale dump) does not know every lease its predecessor
granted, while their holders still believe in them until their next heartbeat. So when the
script finds no state (no epoch), or state written by another instance (the stored run id is
not this server's), it starts a new epoch and grants nothing new until one ``lease_ttl`` after
the instance started (state missing; to the second, by ``uptime_in_seconds``) or after now
(state from elsewhere). Within that time every old holder either re-asserts its leases (its
heartbeat, kind H with the old epoch, takes the slot while there is room) or has reported them
lost (its local deadline is at most ``lease_ttl`` after its last renewal, which was before the
restart). Arrivals queue meanwhile, FIFO as usual: the guard delays them, it never reorders.
It is a delayed restart without fencing tokens. A quota created on a Redis up for longer than
``lease_ttl`` starts without a guard (nobody can hold a lease of an older instance by then).

Every call first purges what expired and applies the releases it carries (``ARGV[9]`` ids
follow it), then *dispatches*: while a slot is free and no guard holds, the head of the queue
is granted (moved to ``leases``) and its process is told on its wake channel (``PUBLISH``, one
message per process with every id granted to it). Only then does the call act, so a free slot
always goes to the oldest waiter: no barging. A lease or waiter id is ``<holder>:<n>``; the
holder part names the wake channel. An enqueue into an empty queue publishes on the quota's
*queued* channel, so holders send their releases at once rather than batching them. Time is
Redis ``TIME`` only: no client clock is ever compared with another.

Ops (``ARGV[1]``): ``req (kind id)...`` (kind A: grant now or enqueue; T: grant now or answer
N; answers per id G/W/N; with no ids, a call that only releases), ``beat (kind id)...`` (one
batched renewal per process: kind H = held, W = waiting; answers per id H/G(granted)/W/L(lost);
with a changed epoch, held ids are re-asserted while there is room), ``stat``, ``resize``.
Every reply starts ``{status, epoch, capacity, holders, waiting, guard_ms_left}``; status
MISMATCH means the stored capacity differs from the caller's.
"""

from __future__ import annotations

__all__ = ["HEADER", "KEY_NAMES", "SCRIPT"]

#: The Redis keys of a quota, in ``KEYS`` order (each prefixed ``trio-tts:{name}:``).
KEY_NAMES = ("cap", "epoch", "leases", "queue", "qexp", "seq", "run", "guard")

#: Length of the header every reply starts with; per-id answers follow it.
HEADER = 6

SCRIPT = r"""
local K_CAP, K_EPOCH, K_LEASES, K_QUEUE, K_QEXP, K_SEQ, K_RUN, K_GUARD =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local op, want, lease_ttl, waiter_ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local their_epoch, nonce, wake, queued = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local first = 10 + tonumber(ARGV[9])  -- the releases are ARGV[10 .. first - 1]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local cap = tonumber(redis.call('GET', K_CAP))
if op == 'resize' or (cap == nil and want ~= '') then
  cap = tonumber(want)
  redis.call('SET', K_CAP, cap)
elseif cap == nil then
  return {'NOCAP', '', 0, 0, 0, 0}
elseif want ~= '' and tonumber(want) ~= cap then
  return {'MISMATCH', '', cap, 0, 0, 0}
end

-- The epoch and the restart guard.
local server = redis.pcall('INFO', 'server')  -- a Redis that refuses INFO: no run id, up 0
if type(server) ~= 'string' then server = '' end
local run = string.match(server, 'run_id:(%x+)') or ''
local epoch = redis.call('GET', K_EPOCH)
local stored_run = redis.call('GET', K_RUN)
local guard = tonumber(redis.call('GET', K_GUARD)) or 0
if not epoch or (stored_run and stored_run ~= run) then
  guard = now + lease_ttl
  if not epoch then  -- from the instance's start: uptime is whole seconds, so 1 s earlier
    local up = tonumber(string.match(server, 'uptime_in_seconds:(%d+)')) or 0
    guard = guard - math.max(0, up * 1000 - 1000)
  end
  epoch = nonce
  redis.call('SET', K_EPOCH, epoch)
  redis.call('SET', K_GUARD, guard)
end
if stored_run ~= run then redis.call('SET', K_RUN, run) end
local guarded = now < guard

-- Purge expired leases and waiters.
redis.call('ZREMRANGEBYSCORE', K_LEASES, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', K_QEXP, '-inf', now)
for _, id in ipairs(dead) do redis.call('ZREM', K_QUEUE, id) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', K_QEXP, '-inf', now) end

-- The releases this call carries.
for i = 10, first - 1 do
  redis.call('ZREM', K_LEASES, ARGV[i])
  redis.call('ZREM', K_QUEUE, ARGV[i])
  redis.call('ZREM', K_QEXP, ARGV[i])
end

local function hold(id)
  redis.call('ZADD', K_LEASES, now + lease_ttl, id)
end

local function enqueue(id)
  if redis.call('ZCARD', K_QUEUE) == 0 then redis.call('PUBLISH', queued, '1') end
  redis.call('ZADD', K_QUEUE, redis.call('INCR', K_SEQ), id)
  redis.call('ZADD', K_QEXP, now + waiter_ttl, id)
end

local function dispatch()
  if guarded then return end
  local free = cap - redis.call('ZCARD', K_LEASES)
  if free <= 0 then return end
  local heads = redis.call('ZRANGE', K_QUEUE, 0, free - 1)
  local woken, order = {}, {}
  for _, id in ipairs(heads) do
    redis.call('ZREM', K_QUEUE, id)
    redis.call('ZREM', K_QEXP, id)
    hold(id)
    local holder = string.match(id, '^[^:]*')
    if woken[holder] then
      woken[holder] = woken[holder] .. ' ' .. id
    else
      woken[holder] = id
      order[#order + 1] = holder
    end
  end
  for _, holder in ipairs(order) do redis.call('PUBLISH', wake .. holder, woken[holder]) end
end

local out = {'OK', epoch, cap, 0, 0, 0}

if op == 'req' then
  dispatch()
  for i = first, #ARGV, 2 do
    local kind, id = ARGV[i], ARGV[i + 1]
    local status
    if redis.call('ZSCORE', K_LEASES, id) then
      status = 'G'
    elseif redis.call('ZSCORE', K_QUEUE, id) then
      redis.call('ZADD', K_QEXP, now + waiter_ttl, id)
      status = 'W'
    elseif not guarded and redis.call('ZCARD', K_QUEUE) == 0
        and redis.call('ZCARD', K_LEASES) < cap then
      hold(id)
      status = 'G'
    elseif kind == 'T' then
      status = 'N'
    else
      enqueue(id)
      status = 'W'
    end
    out[#out + 1] = status
  end
elseif op == 'beat' then
  local state_lost = their_epoch ~= '' and their_epoch ~= epoch
  for i = first, #ARGV, 2 do
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
  for i = first, #ARGV, 2 do
    local j = 7 + (i - first) / 2
    if out[j] == 'W' and redis.call('ZSCORE', K_LEASES, ARGV[i + 1]) then out[j] = 'G' end
  end
else  -- stat, resize
  dispatch()
end
out[4] = redis.call('ZCARD', K_LEASES)
out[5] = redis.call('ZCARD', K_QUEUE)
if guarded then out[6] = guard - now end
return out
"""
