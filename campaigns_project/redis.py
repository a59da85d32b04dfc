"""One Redis connection pool per process, and the key prefix every app key carries."""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    # Short timeouts: a Redis that does not answer must make callers fail closed quickly,
    # not hang a request or a worker.
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=2,
        socket_connect_timeout=2,
        health_check_interval=30,
        decode_responses=True,
    )


def rkey(*parts: str) -> str:
    """An app-owned Redis key: REDIS_KEY_PREFIX + parts joined by ':'."""
    return settings.REDIS_KEY_PREFIX + ":".join(parts)
