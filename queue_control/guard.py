"""Every external call is let through here: gate, breaker, shared rate limit, then the call, then
the classification and counting of its error.

`call_permit` checks, in one Redis round trip (one Lua script), that the queue latch mirror says
active, that the service's breaker is closed, and takes a token of each shared rate limit the call
draws on. The engine asks it right before each call it starts (campaigns/batches.py, the send
loop); `guarded_call` wraps a single call in the same checks.
"""

import logging
import smtplib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import redis
from django.conf import settings

from campaigns_project.redis import get_redis
from integrations.ratelimit import TAKE_TOKENS_LUA, TokenBucket, provider_bucket

from . import breakers
from .breakers import OPEN
from .errors import QueuePaused
from .gate import gate_open, latch_key
from .models import QueueState
from .selectors import breaker_state
from .services import breaker_failure_record, queue_pause

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Errors with no provider flags that still say "the service is down": timeouts, refused or dropped
# connections (socket.timeout, ConnectionError, smtplib.SMTPServerDisconnected are all OSError).
_TRANSPORT_ERRORS = (OSError,)
# ...except an SMTP server refusing one recipient: that is about one input, like a 4xx.
_ONE_INPUT_ERRORS = (smtplib.SMTPRecipientsRefused,)

# KEYS: latch mirror, breaker hash, record list, record fence, the n caps' counters, then the buckets.
# ARGV: the latch's active value, n record entries, record ttl, n caps, the entries, the caps' pairs
# (limit, ttl seconds), the buckets' triples.
# Returns ok | paused | open:<state> | nolatch | nobreaker | unrecorded | capped:<i> | wait:<seconds>.
_PERMIT_LUA = (
    TAKE_TOKENS_LUA
    + """
local latch = redis.call('GET', KEYS[1])
if not latch then return 'nolatch' end
if latch ~= ARGV[1] then return 'paused' end
local state = redis.call('HGET', KEYS[2], 'state')
if not state then return 'nobreaker' end
if state ~= 'closed' then return 'open:' .. state end
local entries = tonumber(ARGV[2])
local caps = tonumber(ARGV[4])
if entries > 0 and (redis.call('EXISTS', KEYS[3]) == 0 or redis.call('EXISTS', KEYS[4]) == 1) then
  return 'unrecorded'
end
local cap_arg = 5 + entries
for i = 1, caps do
  local used = tonumber(redis.call('GET', KEYS[4 + i]) or '0')
  if used >= tonumber(ARGV[cap_arg + (i - 1) * 2]) then return 'capped:' .. tostring(i) end
end
local wait = take_tokens(5 + caps, cap_arg + caps * 2, 1)
if wait > 0 then return 'wait:' .. tostring(wait) end
for i = 1, caps do
  redis.call('INCR', KEYS[4 + i])
  redis.call('EXPIRE', KEYS[4 + i], ARGV[cap_arg + (i - 1) * 2 + 1])
end
if entries > 0 then
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 5, 4 + entries))
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
return 'ok'
"""
)


@dataclass(frozen=True)
class Record:
    """Entries appended to a Redis list in the same atomic step that grants the permit, and only
    then; refused (`Permit.unrecorded`) when the list is missing or its fence key exists. The send
    journal (tracking/journal.py) notes this way that a message is about to be committed."""

    key: str
    fence_key: str
    entries: tuple[str, ...]
    ttl_seconds: int


@dataclass(frozen=True)
class Cap:
    """A counter that lets at most `limit` permits through before it expires (a mailbox's daily
    cap: the key names the day, the ttl outlives it). Counted in the permit's atomic step, so the
    cap holds across every worker."""

    key: str
    limit: int
    ttl_seconds: int
    label: str = "cap"


@dataclass(frozen=True)
class Permit:
    granted: bool
    wait: float = 0.0  # not granted yet: a rate limit has no token for this long
    refusal: str = ""  # not granted: why ("the queue is paused", "circuit breaker apollo is open", ...)
    # The refusal is Redis not answering, not a pause: the work waits and goes on by itself.
    unreachable: bool = False
    # The refusal is the record's list being gone or fenced: the caller must not go on.
    unrecorded: bool = False
    # The refusal is a cap reached (Permit.capped names its label): nothing more until it expires.
    capped: str = ""
    # The refusal is the breaker not closed.
    breaker_open: bool = False


def classify(exc: BaseException) -> tuple[bool, bool]:
    """(counts_for_breaker, trips_immediately) for an error an external call raised.

    Provider errors (integrations.errors.ProviderError) carry both flags on their class; read
    with defaults, so this does not depend on that module's exact shape. Decided before the
    breaker sees anything: an error that does not count is not a success either.
    """
    counts = getattr(exc, "counts_for_breaker", None)
    if counts is None:
        counts = isinstance(exc, _TRANSPORT_ERRORS) and not isinstance(exc, _ONE_INPUT_ERRORS)
    trips = bool(counts) and bool(getattr(exc, "trips_immediately", False))
    return bool(counts), trips


def _known(service: str) -> None:
    if service not in settings.SERVICES:
        raise ValueError(f"No circuit breaker for {service!r}; known: {', '.join(settings.SERVICES)}")


def call_permit(
    service: str,
    buckets: Iterable[TokenBucket | None] = (),
    *,
    record: Record | None = None,
    caps: Iterable[Cap] = (),
    breaker: str | None = None,
) -> Permit:
    """May one call to `service` start now? Checks the gate and the breaker (the service's, or
    `breaker`: a mailbox's own), that no cap is reached, takes a token of every bucket, counts the
    caps and appends the record's entries, all in one round trip; a missing latch mirror or
    breaker hash (Redis restarted) is rebuilt from the database and checked again. Fails closed:
    Redis not answering refuses. An open service breaker pauses the queue; an open `breaker` is
    its owner's to handle (the mailbox's pause)."""
    _known(service)
    breaker_name = breaker or service
    present = [bucket for bucket in buckets if bucket is not None]
    caps = list(caps)
    gate = latch_key()
    record_keys = [record.key, record.fence_key] if record else [gate, gate]
    keys = [gate, breakers.breaker_keys(breaker_name)[0], *record_keys, *(cap.key for cap in caps)]
    keys += [bucket.key for bucket in present]
    entries = list(record.entries) if record else []
    args: list[str | int | float] = [
        QueueState.State.ACTIVE,
        len(entries),
        record.ttl_seconds if record else 0,
        len(caps),
        *entries,
    ]
    args += [arg for cap in caps for arg in (cap.limit, cap.ttl_seconds)]
    args += [arg for bucket in present for arg in bucket.script_args()]
    try:
        script = get_redis().register_script(_PERMIT_LUA)
        for _ in range(3):  # at most: rebuild the mirror, rebuild the breaker, answer
            answer = script(keys=keys, args=args)
            if answer == "nolatch":
                if not gate_open():  # rebuilds the mirror from the latch row
                    return Permit(False, refusal="the queue is paused")
                continue
            if answer == "nobreaker":
                breaker_state(breaker_name)  # rebuilds the hash from the breaker history
                continue
            break
    except redis.RedisError:
        logger.warning("Redis unreadable: no call to %s may start", service)
        return Permit(False, refusal="Redis cannot be reached", unreachable=True)
    if answer == "ok":
        return Permit(True)
    if answer.startswith("wait:"):
        return Permit(False, wait=float(answer[5:]))
    if answer.startswith("open:"):
        state = answer[5:]
        if state == OPEN and breaker is None:
            _pause_for_open_breaker(service)
        return Permit(False, refusal=f"circuit breaker {breaker_name} is {state}", breaker_open=True)
    if answer.startswith("capped:"):
        cap = caps[int(answer[7:]) - 1]
        return Permit(False, refusal=f"{cap.label} reached ({cap.limit})", capped=cap.label)
    if answer == "paused":
        return Permit(False, refusal="the queue is paused")
    if answer == "unrecorded":
        return Permit(False, refusal="its record was taken over or lost", unrecorded=True)
    return Permit(False, refusal=f"the gate could not be read ({answer})", unreachable=True)


def _pause_for_open_breaker(service: str) -> None:
    """An open breaker always means a paused queue. If the pause after the trip failed (database
    unreachable then), the next caller finishes it; queue_pause is idempotent."""
    try:
        if QueueState.get().is_active:
            queue_pause(service=service, actor=None)
    except Exception:
        logger.exception("Could not pause the queue for open breaker %s", service)


def failure_record(service: str, exc: BaseException) -> None:
    """Count an error of a call against the service's breaker, if it is the service's fault. The
    call that opens the breaker pauses the queue (and with it every campaign and job)."""
    counts, trips = classify(exc)
    if not counts:
        return
    try:
        breaker_failure_record(service=service, error=exc, trips_immediately=trips)
    except Exception:
        # Never hide the provider's error behind ours. If Redis is down the gate is closed for
        # everyone anyway; if the database was, the next call re-pauses.
        logger.exception("Could not record a %s failure", service)


def guarded_call(service: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Call fn(*args, **kwargs) for `service` only while the queue is active and the service's
    breaker is closed, within the service's shared rate limit (waiting for a token); otherwise
    raise QueuePaused without calling it."""
    bucket = provider_bucket(service)
    while True:
        permit = call_permit(service, [bucket])
        if permit.granted:
            break
        if permit.wait:
            time.sleep(min(permit.wait, 1.0))
            continue
        raise QueuePaused(f"Not called: {permit.refusal}.", service=service, unreachable=permit.unreachable)
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        failure_record(service, exc)
        raise
