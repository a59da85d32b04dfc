"""Circuit breakers, one per service, with their state in Redis so every process shares it.

Why not pybreaker: see docs/decisions.md, "Circuit breakers". In short, its open state half-opens by itself,
its Redis storage reads "closed" when Redis errors or a key vanishes, and the closed→open edge is
not atomic, so several workers can each observe it. Here one Lua script counts the failure and
opens the breaker in one step, so exactly one caller sees the edge, and nothing but
`breaker_reset` ever closes an open breaker.

Keys (all under REDIS_KEY_PREFIX):
- `breaker:<service>`           hash: state (closed|open), opened_at, last_error, last_failure_at,
                                failures_at_open
- `breaker:<service>:failures`  sorted set of failure timestamps (the sliding window; expires)

`<service>` is one of settings.SERVICES, or `mailbox.<id>` for a sender mailbox's own SMTP breaker.

A missing hash means Redis lost it (restart, flush): selectors rebuild it from the last breaker
event in the database (QueueEvent), never assume it closed.
"""

import logging
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import cast

import redis
from django.conf import settings

from campaigns_project.redis import get_redis, rkey

logger = logging.getLogger(__name__)

CLOSED, OPEN, UNKNOWN = "closed", "open", "unknown"

# KEYS: hash, failures zset. ARGV: now, window, threshold, trips_immediately (0|1), error, member.
# Returns {edge, failures in window}: edge is 1 only for the call that moved closed -> open.
# A failure reported while already open (an in-flight call finishing late) changes nothing.
_RECORD_FAILURE = """
if redis.call('HGET', KEYS[1], 'state') == 'open' then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'failures_at_open') or 0)}
end
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[2])) + 1)
redis.call('HSET', KEYS[1], 'state', 'closed', 'last_error', ARGV[5], 'last_failure_at', ARGV[1])
local count = redis.call('ZCARD', KEYS[2])
if ARGV[4] == '1' or count >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[1], 'failures_at_open', count)
  return {1, count}
end
return {0, count}
"""

# Rebuild a vanished hash without overwriting one another process wrote in the meantime.
# ARGV: state, opened_at, last_error, failures_at_open.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'opened_at', ARGV[2], 'last_error', ARGV[3],
           'failures_at_open', ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Breaker:
    service: str
    state: str  # closed | open | unknown (Redis could not be read: treated as open)
    failures: int
    threshold: int
    window: int  # seconds
    opened_at: datetime | None
    last_error: str

    def as_dict(self) -> dict:
        return asdict(self)


def _now() -> float:
    return time.time()


def breaker_keys(service: str) -> tuple[str, str]:
    """The breaker's state hash and its failures' sorted set."""
    return rkey("breaker", service), rkey("breaker", service, "failures")


# Each sender mailbox's SMTP has a breaker of its own, named `mailbox.<id>`, with the smtp
# breaker's threshold and window. It is not one of settings.SERVICES: it never pauses the queue
# nor blocks its resume; it pauses its mailbox (campaigns/mailboxes.py).
MAILBOX_BREAKER_PREFIX = "mailbox."


def mailbox_breaker(mailbox_id: int) -> str:
    return f"{MAILBOX_BREAKER_PREFIX}{int(mailbox_id)}"


def _config(service: str) -> dict:
    try:
        return settings.BREAKERS[service]
    except KeyError:
        if service.startswith(MAILBOX_BREAKER_PREFIX) and service[len(MAILBOX_BREAKER_PREFIX) :].isdigit():
            return settings.BREAKERS["smtp"]
        raise ValueError(f"Unknown service {service!r}; known: {', '.join(settings.SERVICES)}") from None


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), tz=UTC) if value else None


def breaker_unknown(service: str) -> Breaker:
    """What we report when Redis cannot tell us: not closed, so nothing resumes on it."""
    config = _config(service)
    return Breaker(service, UNKNOWN, 0, config["threshold"], config["window"], None, "")


def breaker_failure_count(service: str, error: str, *, trips_immediately: bool = False) -> tuple[bool, int]:
    """Count one failure against the service's window. Returns (opened, failures): opened is True
    only for the one call that moved the breaker from closed to open."""
    config = _config(service)
    script = get_redis().register_script(_RECORD_FAILURE)
    opened, failures = script(
        keys=list(breaker_keys(service)),
        args=[_now(), config["window"], config["threshold"], int(trips_immediately), error[:1000], uuid.uuid4().hex],
    )
    return bool(opened), int(failures)


def breaker_close(service: str) -> None:
    """Closed, no failures counted. Only an operator's reset gets here."""
    _config(service)
    state_key, failures_key = breaker_keys(service)
    pipe = get_redis().pipeline(transaction=True)
    pipe.delete(state_key, failures_key)
    pipe.hset(state_key, mapping={"state": CLOSED, "opened_at": "", "last_error": ""})
    pipe.execute()


def breaker_restore(
    service: str, *, state: str, opened_at: datetime | None = None, last_error: str = "", failures: int = 0
) -> None:
    """Recreate a vanished breaker hash (from the database history); never overwrites one."""
    script = get_redis().register_script(_RESTORE)
    script(
        keys=[breaker_keys(service)[0]],
        args=[state, opened_at.timestamp() if opened_at else "", last_error[:1000], failures],
    )


def breaker_state_fast(service: str) -> str | None:
    """The state alone, one HGET (the guard's hot path). None: the hash is gone, rebuild it."""
    try:
        # cast: the client decodes responses (decode_responses=True), which redis-py's types cannot see.
        return cast(str | None, get_redis().hget(breaker_keys(service)[0], "state"))
    except redis.RedisError:
        logger.warning("Redis unreadable: breaker %s reported unknown", service)
        return UNKNOWN


def breakers_read(services: tuple[str, ...] | list[str] | None = None) -> dict[str, Breaker | None]:
    """Every breaker in one round trip. A value of None: the hash is gone (rebuild it)."""
    services = list(services or settings.SERVICES)
    now = _now()
    try:
        pipe = get_redis().pipeline(transaction=False)
        for service in services:
            state_key, failures_key = breaker_keys(service)
            pipe.hgetall(state_key)
            pipe.zcount(failures_key, now - _config(service)["window"], "+inf")
        replies = pipe.execute()
    except redis.RedisError:
        logger.warning("Redis unreadable: every breaker reported unknown")
        replies = None

    result: dict[str, Breaker | None] = {}
    for index, service in enumerate(services):
        config = _config(service)
        if replies is None:
            result[service] = breaker_unknown(service)
            continue
        data, in_window = replies[2 * index], replies[2 * index + 1]
        if not data:
            result[service] = None
            continue
        state = data.get("state") or CLOSED
        # An open breaker shows the count that opened it; a closed one its live window count.
        failures = int(data.get("failures_at_open") or in_window) if state == OPEN else in_window
        result[service] = Breaker(
            service=service,
            state=state,
            failures=failures,
            threshold=config["threshold"],
            window=config["window"],
            opened_at=_timestamp(data.get("opened_at")) if state == OPEN else None,
            last_error=data.get("last_error", ""),
        )
    return result
