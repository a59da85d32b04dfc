"""The pixel's buffered opens: the one-way Redis connection the pixel RPUSHes on, the entry format,
and the drain (one set-based statement per batch) the beat task runs. Re-exported by
tracking.services, the app's write API.
"""

import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import redis
from django.db import connection, transaction

from campaigns_project.redis import get_redis, rkey

from .counters import counters_add
from .events import event_record, seen_metrics
from .models import EmailEvent
from .receivers import email_events_emit, email_events_wanted
from .sql import OPENS_DRAIN_SQL
from .states import EventType

logger = logging.getLogger(__name__)


# --- Buffered opens ----------------------------------------------------------------------------
#
# The pixel does not write to the database: it appends one entry per open to a Redis list (one
# RPUSH), and `opens_drain` (the beat task tracking.tasks.drain_opens, every 2 s) writes them in
# batches of one set-based statement. Each entry carries a unique id, stored as the event's
# provider_event_id under source "pixel": the unique (source, provider_event_id) constraint makes a
# batch drained twice (a crash between the commit and the LTRIM) record each open once.

OPENS_SOURCE = "pixel"
# Longer than any batch takes; a drainer that outlives it does not trim (see _TRIM_IF_LOCKED).
OPENS_DRAIN_LOCK_SECONDS = 60

# Trim the drained entries only while this drainer still holds the lock: if it expired and another
# drainer took over, that one may have read (and will trim) the same entries, and trimming them
# twice would drop entries nobody wrote.
_TRIM_IF_LOCKED = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('LTRIM', KEYS[1], ARGV[2], -1)
    redis.call('DEL', KEYS[2])
    return 1
end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _opens_key() -> str:
    return rkey("tracking", "opens")


OPENS_CONNECTION_NAME = "pixel-opens"


class _OpensChannel:
    """A one-way Redis connection for the pixel's RPUSH: `CLIENT REPLY OFF`, so a request sends
    its open and goes on without waiting for an answer (docs/decisions.md, "The pixel does not wait
    for Redis's answer").

    Once the send returns, the open is in the kernel on its way to Redis and arrives even if this
    process dies next. A Redis that cannot be reached makes the send (or the reconnect) raise, and
    the pixel then writes the open to the database instead. One per thread: a connection is not
    thread-safe."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.connection = client.connection_pool.make_connection()
        self.connection.register_connect_callback(self._reply_off)  # on every (re)connect

    def _reply_off(self, connection) -> None:
        connection.send_command("CLIENT", "SETNAME", OPENS_CONNECTION_NAME, check_health=False)
        connection.read_response()  # named, so an operator can tell it in CLIENT LIST
        connection.send_command("CLIENT", "REPLY", "OFF", check_health=False)

    def rpush(self, key: str, value: str) -> None:
        try:
            # No health check: its PING would wait for a reply that never comes.
            self.connection.send_packed_command(self.connection.pack_command("RPUSH", key, value), check_health=False)
        except BaseException:
            self.connection.disconnect()  # the next call reconnects
            raise


_channels = threading.local()


def _opens_channel() -> _OpensChannel:
    client = get_redis()
    channel = getattr(_channels, "channel", None)
    if channel is None or channel.client is not client:  # first use, or a new client (settings changed)
        channel = _channels.channel = _OpensChannel(client)
    return channel


# A buffered open is one string: OPEN_ENTRY_TAG, then id, token, epoch seconds, machine (0/1), ip
# and user agent, separated by US (0x1f, a control character no HTTP header value may hold).
# Cheaper than JSON on both ends.
OPEN_ENTRY_TAG, _US = "o1", "\x1f"


def open_buffer(*, token: str, is_machine: bool, user_agent: str = "", ip: str | None = None) -> None:
    """Queue an open from the pixel for opens_drain: one RPUSH, sent without waiting for the
    reply. Raises redis.RedisError when Redis cannot be reached."""
    fields = (os.urandom(16).hex(), token, f"{time.time():.6f}", "1" if is_machine else "0", ip or "")
    entry = _US.join((OPEN_ENTRY_TAG, *fields, user_agent[:512].replace(_US, "")))
    _opens_channel().rpush(_opens_key(), entry)


def opens_pending() -> int:
    """How many buffered opens wait for the drain."""
    return get_redis().llen(_opens_key())


def _open_entry(item: str) -> dict:
    if item.startswith(OPEN_ENTRY_TAG + _US):
        _, entry_id, token, at, machine, ip, user_agent = item.split(_US, 6)
        if not entry_id or not token or machine not in ("0", "1"):
            raise ValueError(item)
        return {
            "id": entry_id,
            "token": token,
            "at": datetime.fromtimestamp(float(at), UTC),
            "machine": machine == "1",
            "ua": user_agent,
            "ip": ip or None,
        }
    raise ValueError(item)


def _opens_parse(raw: list[str]) -> list[dict]:
    entries, ids = [], set()
    for item in raw:
        try:
            entry = _open_entry(item)
        except (ValueError, TypeError, KeyError):
            logger.error("Dropping a malformed buffered open: %.200s", item)
            continue
        if entry["id"] not in ids:  # the same entry twice in one batch: one event
            ids.add(entry["id"])
            entries.append(entry)
    return entries


def _opens_write(entries: list[dict]) -> int:
    """Record buffered opens, each once whatever the replays; unknown tokens record nothing."""
    if connection.vendor != "postgresql":  # the embedded SQLite run: the general path, per event
        written = 0
        for entry in entries:
            event = event_record(
                type=EventType.OPEN,
                token=entry["token"],
                occurred_at=entry["at"],
                is_machine=bool(entry.get("machine")),
                user_agent=entry.get("ua") or "",
                ip=entry.get("ip"),
                source=OPENS_SOURCE,
                provider_event_id=entry["id"],
            )
            written += event is not None
        return written
    params: dict[str, Any] = {
        "ids": [entry["id"] for entry in entries],
        "tokens": [entry["token"] for entry in entries],
        "ats": [entry["at"] for entry in entries],
        "machine": [bool(entry.get("machine")) for entry in entries],
        "uas": [(entry.get("ua") or "")[:512] for entry in entries],
        "ips": [entry.get("ip") or None for entry in entries],
        "source": OPENS_SOURCE,
    }
    written = 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(OPENS_DRAIN_SQL, params)
            rows = cursor.fetchall()
        for campaign_id, events, human_events, first, first_human in rows:  # in campaign order: no deadlock
            written += events
            counters_add(
                campaign_id=campaign_id,
                metrics=seen_metrics(
                    type=EventType.OPEN, events=events, human_events=human_events, first=first, first_human=first_human
                ),
            )
            _opens_emit(campaign_id, params["ids"])
    return written


def _opens_emit(campaign_id, entry_ids: list[str]) -> None:
    """email.opened webhook events for the opens a drain batch wrote for one campaign: one query,
    and only when the campaign's organization subscribed (email_events_emit checks first)."""
    if not email_events_wanted(type=EventType.OPEN, campaign_id=campaign_id):
        return
    rows = EmailEvent.objects.filter(
        campaign_id=campaign_id, source=OPENS_SOURCE, provider_event_id__in=entry_ids
    ).values_list("recipient_id", "occurred_at", "is_machine")
    email_events_emit(
        type=EventType.OPEN,
        campaign_id=campaign_id,
        events=[
            {"recipient_id": rid, "occurred_at": at, "is_machine": machine, "source": OPENS_SOURCE}
            for rid, at, machine in rows
        ],
    )


def opens_drain(*, batch_size: int = 5000) -> int:
    """Write up to batch_size buffered opens to the database, then remove them from the buffer.
    Returns how many events were written (0 also when another drainer holds the lock).

    Under a Redis lock, so two drainers never trim each other's entries. The entries leave Redis
    only after the commit; a crash in between leaves them to the next drain, which records none of
    them twice."""
    r = get_redis()
    key, lock_key, lock = _opens_key(), rkey("tracking", "opens", "drain-lock"), uuid.uuid4().hex
    if not r.set(lock_key, lock, nx=True, ex=OPENS_DRAIN_LOCK_SECONDS):
        return 0
    try:
        raw = cast(list[str], r.lrange(key, 0, batch_size - 1))
        written = _opens_write(_opens_parse(raw)) if raw else 0
        if written:
            r.incrby(rkey("metrics", "opens-drained"), written)  # read by /metrics
        if raw and not r.eval(_TRIM_IF_LOCKED, 2, key, lock_key, lock, len(raw)):
            logger.warning("The opens drain lock expired before the trim; the next drain will skip the replays.")
    finally:
        r.eval(_UNLOCK, 1, lock_key, lock)
    return written
