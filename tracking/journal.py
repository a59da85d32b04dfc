"""The send journal: what a send job hands to the mail server, written to Redis as it happens.

At most once means a recipient is claimed (pending → sending) before SMTP and marked sent after.
A worker killed in between leaves its claimed batch in `sending`, and only the journal can tell
afterwards which of those recipients were never handed over (back to pending, to be sent), which
were accepted (sent), and which one was cut off in the instant after the message was committed
(the end of DATA) and before the server's answer (stays in `sending`, for an operator).

Entries of `send-journal:<job id>:<attempt>`, a Redis list, one per run of the job: the next run
opens its own, so it can never lift the fence a recovery put on the run before it (a worker
stalled past JOB_STUCK_AFTER_SECONDS, taken for dead, must commit nothing more):
- `open:<attempt>`: written before the claim; a journal without it was lost (Redis restarted);
- `b:<recipient id>`: right before the message's end of DATA (the commit) is sent;
- `s:<recipient id>:<Message-ID>`: the server accepted it (written with the next `b:`).

Entries are appended by the send's permit (queue_control.guard.call_permit with a Record), in the
same atomic step that checks the gate and takes the rate limit's token, right before the end of
DATA; the permit is refused once the journal is fenced or gone, and the recovery
(`journal_take_over`) fences it in the same atomic step as it reads it: a worker that was only
stalled, not dead, can then commit no further message. Database flushes of the job make
the journal redundant for what they cover; it is deleted when the job ends cleanly.
"""

import contextlib

import redis

from campaigns_project.redis import get_redis, rkey
from queue_control.guard import Record

# Long enough to outlive any job and the sweeper's recovery of it; a journal left behind expires.
JOURNAL_TTL_SECONDS = 24 * 3600

_TAKE_OVER = """
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('LRANGE', KEYS[1], 0, -1)
"""


class JournalRefused(Exception):
    """The journal cannot take the entry (fenced by a recovery, lost, or Redis unreachable): the
    message must not be committed."""


def _keys(job_id: int, attempt: int) -> list[str]:
    key = rkey("send-journal", f"{job_id}:{attempt}")
    return [key, key + ":fenced"]


def journal_open(job_id: int, attempt: int) -> None:
    """Start the journal of this run of the job. Raises redis.RedisError."""
    key, fence = _keys(job_id, attempt)
    pipe = get_redis().pipeline(transaction=True)
    pipe.delete(key, fence)
    pipe.rpush(key, f"open:{attempt}")
    pipe.expire(key, JOURNAL_TTL_SECONDS)
    pipe.execute()


def journal_record(job_id: int, attempt: int, *entries: str) -> Record:
    """The entries, for the permit that lets the next message be committed."""
    key, fence = _keys(job_id, attempt)
    return Record(key=key, fence_key=fence, entries=entries, ttl_seconds=JOURNAL_TTL_SECONDS)


def journal_take_over(job_id: int, attempt: int) -> list[str] | None:
    """Fence the run's journal (no append succeeds any more) and return its entries; None when it
    was lost. Raises redis.RedisError."""
    script = get_redis().register_script(_TAKE_OVER)
    entries = script(keys=_keys(job_id, attempt), args=[JOURNAL_TTL_SECONDS])
    return None if entries is None else list(entries)


def journal_fenced(job_id: int, attempt: int) -> bool:
    """Whether a recovery took this run's journal over (the run was taken for dead). Redis not
    answering: False."""
    try:
        return bool(get_redis().exists(_keys(job_id, attempt)[1]))
    except redis.RedisError:
        return False


def journal_close(job_id: int, attempt: int) -> None:
    """The run ended: its journal goes (the fence stays, to expire: a stalled run stays stopped)."""
    with contextlib.suppress(redis.RedisError):  # left behind, it expires by itself
        get_redis().delete(_keys(job_id, attempt)[0])


def journal_read(entries: list[str]) -> tuple[dict[int, str], set[int]]:
    """({recipient id: Message-ID} accepted, {recipient ids} whose commit began) of a journal."""
    sent: dict[int, str] = {}
    begun: set[int] = set()
    for entry in entries:
        kind, _, rest = entry.partition(":")
        if kind == "b":
            begun.add(int(rest))
        elif kind == "s":
            recipient_id, _, message_id = rest.partition(":")
            sent[int(recipient_id)] = message_id
    return sent, begun
