"""Token buckets in Redis, shared by every worker (Celery's rate_limit is per worker).

The bucket math is one Lua function, `take_tokens`, which refills and takes tokens atomically on
Redis's clock (so two workers never both take the last token, and skewed worker clocks do not
matter). It takes from several buckets at once, all or none: a send needs a token of its
campaign's bucket and of its mailbox's. queue_control.guard runs it in the same script as the
gate and breaker checks, so a call costs one round trip; `TokenBucket.try_acquire` runs it alone.
"""

import math
from dataclasses import dataclass

from django.conf import settings

from campaigns_project.redis import get_redis, rkey

# take_tokens(first_key, first_arg, wanted): for each bucket KEYS[first_key..#KEYS], with ARGV
# triples (rate per second, burst, ttl ms) from ARGV[first_arg], take `wanted` tokens from all of
# them if each has them; otherwise take nothing. Returns the seconds until all would have them.
TAKE_TOKENS_LUA = """
local function take_tokens(first_key, first_arg, wanted)
  if #KEYS < first_key then return 0 end
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
  local wait, tokens = 0, {}
  for i = first_key, #KEYS do
    local a = first_arg + (i - first_key) * 3
    local rate, burst = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local have = tonumber(state[1]) or burst
    local ts = tonumber(state[2]) or now
    have = math.min(burst, have + math.max(0, now - ts) * rate)
    tokens[i] = have
    if have < wanted then wait = math.max(wait, (wanted - have) / rate) end
  end
  if wait > 0 then return wait end
  for i = first_key, #KEYS do
    local a = first_arg + (i - first_key) * 3
    redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i] - wanted), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[i], ARGV[a + 2])
  end
  return 0
end
"""
# A Lua number returned to Redis is truncated to an integer: the wait goes back as a string.
_TRY_ACQUIRE = TAKE_TOKENS_LUA + "return tostring(take_tokens(1, 2, tonumber(ARGV[1])))"


@dataclass(frozen=True)
class TokenBucket:
    """A shared bucket: `rate` tokens a second, at most `burst` saved up."""

    name: str
    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a token bucket needs a rate > 0 and a burst >= 1")

    @property
    def key(self) -> str:
        return rkey("bucket", self.name)

    @property
    def ttl_ms(self) -> int:
        # A bucket left alone refills completely in burst / rate seconds; after that an absent key
        # means the same as a full bucket, so the key may expire.
        return math.ceil(self.burst / self.rate * 1000) + 1000

    def script_args(self) -> list[float | int]:
        return [self.rate, self.burst, self.ttl_ms]

    def try_acquire(self, tokens: int = 1) -> float:
        """Take `tokens` if available and return 0; otherwise take nothing and return the seconds
        until they will be."""
        if not 1 <= tokens <= self.burst:
            raise ValueError(f"tokens must be between 1 and the burst ({self.burst}), got {tokens}")
        script = get_redis().register_script(_TRY_ACQUIRE)
        return float(script(keys=[self.key], args=[tokens, *self.script_args()]))


def provider_bucket(service: str) -> TokenBucket | None:
    """The shared bucket of a provider's rate limit (settings.PROVIDER_RATE_LIMITS), or None when
    the service has none. The burst is a tenth of a second's calls, so a burst never doubles the
    rate a provider sees in its first second."""
    rate = settings.PROVIDER_RATE_LIMITS.get(service) or 0
    if rate <= 0:
        return None
    return TokenBucket(f"provider:{service}", rate, max(1, math.ceil(rate / 10)))
