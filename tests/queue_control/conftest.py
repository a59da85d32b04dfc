import pytest
from django.conf import settings as django_settings

from campaigns_project.redis import get_redis, rkey
from tests.factories import CampaignFactory, JobFactory

STATUS = "/api/v1/queue-management/status"
PAUSE = "/api/v1/queue-management/pause"
RESUME = "/api/v1/queue-management/resume-service"
BREAKERS = "/api/v1/queue-management/circuit-breakers"


def reset_url(service: str) -> str:
    return f"{BREAKERS}/{service}/reset"


@pytest.fixture
def redis_client():
    return get_redis()


@pytest.fixture
def latch_mirror(redis_client):
    """Reads the Redis mirror of the queue latch (None: missing)."""
    return lambda: redis_client.get(rkey("queue", "latch"))


@pytest.fixture
def thresholds(settings):
    """thresholds(apollo=1, openai=5): per-service breaker thresholds for one test."""

    def set_thresholds(**by_service: int) -> None:
        settings.BREAKERS = {
            **django_settings.BREAKERS,
            **{service: {"threshold": n, "window": 60} for service, n in by_service.items()},
        }

    return set_thresholds


@pytest.fixture
def dead_redis(settings):
    """Point the app at a Redis that does not answer (a closed port)."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    get_redis.cache_clear()
    yield
    get_redis.cache_clear()


@pytest.fixture
def running_campaign_with_jobs(db):
    """A running campaign with two pending jobs and one processing job."""

    def make(**campaign_fields):
        campaign = CampaignFactory(status="running", **campaign_fields)
        jobs = [
            JobFactory(campaign=campaign, status="pending"),
            JobFactory(campaign=campaign, status="pending"),
            JobFactory(campaign=campaign, status="processing"),
        ]
        return campaign, jobs

    return make


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Runs on_commit callbacks (the latch mirror write, the campaign kicks) as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture(autouse=True)
def kicked(monkeypatch):
    """Campaign ids the queue resume asked workers to re-enqueue (the Celery side is not under test)."""
    calls: list = []
    monkeypatch.setattr("campaigns.pausing.campaigns_kick", lambda ids: calls.extend(str(i) for i in ids))
    return calls
