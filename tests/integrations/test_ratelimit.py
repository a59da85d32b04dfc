import time

import pytest

from campaigns_project.redis import get_redis, rkey
from integrations.ratelimit import TokenBucket, provider_bucket


def test_it_grants_the_burst_then_makes_you_wait():
    bucket = TokenBucket("sends:c1", rate=1, burst=3)
    assert [bucket.try_acquire() for _ in range(3)] == [0, 0, 0]
    wait = bucket.try_acquire()
    assert 0.9 < wait <= 1.0


def test_it_refills_at_the_rate():
    bucket = TokenBucket("sends:c1", rate=50, burst=1)
    assert bucket.try_acquire() == 0
    assert bucket.try_acquire() > 0
    time.sleep(0.03)
    assert bucket.try_acquire() == 0


def test_two_buckets_with_the_same_name_share_their_tokens():
    first = TokenBucket("provider:apollo", rate=1, burst=2)
    second = TokenBucket("provider:apollo", rate=1, burst=2)
    assert first.try_acquire() == 0
    assert second.try_acquire() == 0
    assert first.try_acquire() > 0
    assert second.try_acquire() > 0


def test_buckets_with_other_names_do_not_share():
    TokenBucket("sends:c1", rate=1, burst=1).try_acquire()
    assert TokenBucket("sends:c2", rate=1, burst=1).try_acquire() == 0


def test_it_takes_several_tokens_at_once_only_when_all_are_there():
    bucket = TokenBucket("sends:c1", rate=10, burst=5)
    assert bucket.try_acquire(4) == 0
    assert bucket.try_acquire(4) > 0
    assert bucket.try_acquire(1) == 0


def test_its_key_carries_the_app_prefix_and_expires():
    TokenBucket("sends:c1", rate=2, burst=4).try_acquire()
    ttl_ms = get_redis().pttl(rkey("bucket", "sends:c1"))
    assert 0 < ttl_ms <= 3000


def test_it_refuses_impossible_requests():
    with pytest.raises(ValueError):
        TokenBucket("sends:c1", rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket("sends:c1", rate=1, burst=2).try_acquire(3)


def test_a_providers_bucket_comes_from_its_rate_limit_setting(settings):
    settings.PROVIDER_RATE_LIMITS = {**settings.PROVIDER_RATE_LIMITS, "openai": 100.0, "apollo": 0}
    bucket = provider_bucket("openai")
    assert (bucket.name, bucket.rate, bucket.burst) == ("provider:openai", 100.0, 10)
    assert provider_bucket("apollo") is None  # no limit configured: no bucket
