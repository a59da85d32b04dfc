"""A token bucket in Redis, shared by every worker (Celery's rate_limit is per worker).

One Lua script refills and takes tokens atomically, on Redis's clock, so two workers never both
take the last token and skewed worker clocks do not matter.
"""

import math
import time

from campaigns_project.redis import get_redis, rkey

# KEYS[1] bucket; ARGV: rate per second, burst, tokens wanted, ttl ms. Returns the seconds to wait
# as a string (a Lua number would be truncated to an integer), "0" when the tokens were taken.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= wanted then
    tokens = tokens - wanted
else
    wait = (wanted - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return tostring(wait)
"""


class RateLimitTimeout(Exception):
    """acquire() could not get its tokens within the timeout."""


class TokenBucket:
    def __init__(self, name: str, rate_per_second: float, burst: int) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate_per_second > 0 and burst >= 1")
        self.name = name
        self.rate = rate_per_second
        self.burst = burst
        self.key = rkey("bucket", name)
        # A bucket left alone refills completely in burst / rate seconds; after that an absent key
        # means the same as a full bucket, so the key may expire.
        self.ttl_ms = math.ceil(burst / rate_per_second * 1000) + 1000
        self._script = get_redis().register_script(TOKEN_BUCKET_LUA)

    def try_acquire(self, tokens: int = 1) -> float:
        """Take `tokens` if available and return 0; otherwise take nothing and return the seconds
        until they will be."""
        if not 1 <= tokens <= self.burst:
            raise ValueError(f"tokens must be between 1 and the burst ({self.burst}), got {tokens}")
        return float(self._script(keys=[self.key], args=[self.rate, self.burst, tokens, self.ttl_ms]))

    def acquire(self, timeout: float, tokens: int = 1) -> None:
        """Sleep until `tokens` are taken, or raise RateLimitTimeout once `timeout` seconds would pass."""
        deadline = time.monotonic() + timeout
        while (wait := self.try_acquire(tokens)) > 0:
            if time.monotonic() + wait > deadline:
                raise RateLimitTimeout(f"bucket {self.name!r}: no {tokens} token(s) within {timeout:g}s")
            time.sleep(wait)
