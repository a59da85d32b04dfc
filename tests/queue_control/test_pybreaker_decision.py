"""Why queue_control does not use pybreaker's CircuitRedisStorage (docs/decisions.md, "Circuit breakers").

Each test pins down one behaviour of pybreaker 1.4 that breaks a rule of design §4 (docs/design.md), next to the
test showing our breaker keeps that rule. If pybreaker changes, these tests say so.
"""

import threading
import time

import pybreaker  # noqa: E402  (a dev dependency, kept for this evidence)
import pytest
import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from queue_control import breakers
from queue_control.selectors import breaker_state


@pytest.fixture
def raw_redis():
    # pybreaker's storage decodes bytes itself: it cannot share our decode_responses=True client.
    return redis.Redis.from_url(settings.REDIS_URL)


@pytest.fixture
def unreachable_client():
    return redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))


def storage(raw_redis, name="apollo"):
    return pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, raw_redis, namespace=settings.REDIS_KEY_PREFIX + name)


def fail():
    raise ConnectionError("down")


def test_pybreaker_reads_closed_when_redis_cannot_be_read(raw_redis, unreachable_client):
    store = storage(raw_redis)
    store.state = pybreaker.STATE_OPEN
    store._redis = unreachable_client  # Redis goes away

    assert store.state == pybreaker.STATE_CLOSED  # fails open: calls would go through


def test_pybreaker_reads_closed_when_its_key_vanishes(raw_redis):
    store = storage(raw_redis)
    store.state = pybreaker.STATE_OPEN
    raw_redis.delete(settings.REDIS_KEY_PREFIX + "apollo:pybreaker:state")  # Redis restarted without it

    assert store.state == pybreaker.STATE_CLOSED


def test_pybreaker_closes_an_open_breaker_by_itself_after_reset_timeout(raw_redis):
    breaker = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=0.05, state_storage=storage(raw_redis))
    with pytest.raises(pybreaker.CircuitBreakerError):
        breaker.call(fail)
    assert breaker.current_state == pybreaker.STATE_OPEN

    time.sleep(0.1)
    breaker.call(lambda: "ok")  # the half-open trial call goes through to the provider...

    assert breaker.current_state == pybreaker.STATE_CLOSED  # ...and nobody reset it


def test_pybreaker_counts_an_excluded_error_as_a_success(raw_redis):
    breaker = pybreaker.CircuitBreaker(fail_max=3, exclude=[ValueError], state_storage=storage(raw_redis))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    assert breaker.fail_counter == 2

    with pytest.raises(ValueError):
        breaker.call(lambda: (_ for _ in ()).throw(ValueError("one bad email")))

    assert breaker.fail_counter == 0  # a bad input wiped out two real failures


def test_pybreaker_lets_every_process_observe_the_opening(raw_redis):
    """Two workers share the storage; both see "closed → open", so a listener that pauses the
    queue runs in each of them (the edge is not owned by one caller)."""
    openings = []

    class Listener(pybreaker.CircuitBreakerListener):
        def state_change(self, cb, old_state, new_state):
            if new_state.name == pybreaker.STATE_OPEN:
                openings.append(cb.name)

    worker_a = pybreaker.CircuitBreaker(fail_max=1, state_storage=storage(raw_redis), listeners=[Listener()], name="a")
    worker_b = pybreaker.CircuitBreaker(fail_max=1, state_storage=storage(raw_redis), listeners=[Listener()], name="b")
    with pytest.raises(pybreaker.CircuitBreakerError):
        worker_a.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        worker_b.call(fail)  # refused, but worker b first "notices" the opening

    assert openings == ["a", "b"]


# --- the same rules, held by queue_control.breakers ----------------------------------------------


def test_our_breaker_reads_unknown_not_closed_when_redis_cannot_be_read(request):
    breakers.breaker_failure_count("apollo", "down", trips_immediately=True)
    request.getfixturevalue("dead_redis")  # now Redis goes away

    assert breakers.breakers_read(["apollo"])["apollo"].state == breakers.UNKNOWN
    assert breaker_state("apollo") == breakers.UNKNOWN


def test_our_breaker_stays_open_until_reset_and_ignores_time(monkeypatch):
    breakers.breaker_failure_count("apollo", "down", trips_immediately=True)
    monkeypatch.setattr(breakers, "_now", lambda: time.time() + 365 * 86400)

    assert breakers.breakers_read(["apollo"])["apollo"].state == breakers.OPEN


def test_exactly_one_of_many_concurrent_failures_sees_the_opening(settings):
    settings.BREAKERS = {**settings.BREAKERS, "apollo": {"threshold": 5, "window": 60}}
    edges = []
    start = threading.Barrier(20)

    def worker():
        start.wait()
        edges.append(breakers.breaker_failure_count("apollo", "down")[0])

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert edges.count(True) == 1
