"""The gate every worker checks before claiming a job and before every external call.

One Redis GET of the latch mirror (`queue:latch`, "active" | "paused"). It fails closed: if Redis
cannot be read the answer is "paused". A missing key (Redis restarted or flushed) is rebuilt from
the QueueState row, which is the truth.
"""

import logging
from typing import cast

import redis
from django.db import DatabaseError

from campaigns_project.redis import get_redis, rkey

from .models import QueueState

logger = logging.getLogger(__name__)


def latch_key() -> str:
    return rkey("queue", "latch")


def gate_open() -> bool:
    try:
        value = get_redis().get(latch_key())
        if value is None:
            value = _mirror_rebuild()
    except (redis.RedisError, DatabaseError):
        logger.warning("Queue gate cannot read its state: answering paused", exc_info=True)
        return False
    return value == QueueState.State.ACTIVE


def _mirror_rebuild() -> str:
    state = QueueState.get().state
    r = get_redis()
    # NX: a pause that set the mirror while we read the row wins over our (older) reading.
    if r.set(latch_key(), state, nx=True):
        return state
    # cast: the client decodes responses (decode_responses=True), which redis-py's types cannot see.
    return cast(str | None, r.get(latch_key())) or QueueState.State.PAUSED


def mirror_set(state: str) -> None:
    """Best effort: the row is the truth and a missing or stale-paused mirror only fails closed."""
    try:
        get_redis().set(latch_key(), state)
    except redis.RedisError:
        logger.warning("Could not write the queue latch mirror (%s)", state, exc_info=True)


def mirror_sync() -> None:
    """After a latch transaction commits: copy the committed row to Redis.

    Pauses and resumes commit one after the other (the row lock), but their after-commit copies
    could in theory land out of order; the worst case is a mirror left "paused" under an active
    row, which fails closed, shows as gate_open=false on the status page, and the next resume
    rewrites."""
    try:
        mirror_set(QueueState.get().state)
    except DatabaseError:
        # Unsure of the row: drop the mirror, so the next gate check reads the row (or fails closed).
        logger.warning("Could not read the queue latch row; dropping the mirror", exc_info=True)
        try:
            get_redis().delete(latch_key())
        except redis.RedisError:
            logger.warning("Could not drop the queue latch mirror", exc_info=True)
