"""The queue, its breakers and the cascade, through the API: what an operator sees and what the
database and Redis hold after each step."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign, CampaignEvent, Job
from campaigns_project.redis import rkey
from integrations.errors import BadRequestError, QuotaExhaustedError, ServerError
from queue_control import breakers
from queue_control.errors import QueuePaused
from queue_control.gate import gate_open
from queue_control.guard import guarded_call
from queue_control.models import QueueEvent, QueueState
from queue_control.services import breaker_reset, queue_pause, queue_resume
from tests.breakers import breaker_trip
from tests.factories import CampaignFactory, JobFactory

from .conftest import BREAKERS, PAUSE, RESUME, STATUS, reset_url

pytestmark = pytest.mark.django_db

SERVICES = ["apollo", "instantly", "millionverifier", "openai", "perplexity", "smtp"]


def fail_through_guard(service: str, exc: Exception) -> None:
    def call():
        raise exc

    with pytest.raises(type(exc)):
        guarded_call(service, call)


def breaker(data: dict, service: str) -> dict:
    return next(b for b in data["breakers"] if b["service"] == service)


def kinds() -> list[str]:
    return list(QueueEvent.objects.order_by("id").values_list("kind", flat=True))


# --- normal operation ------------------------------------------------------------------------


def test_status_is_accurate_in_normal_operation(platform_client, running_campaign_with_jobs, latch_mirror):
    running_campaign_with_jobs()
    CampaignFactory(status="paused", pause_kind="manual")

    response = platform_client.get(STATUS)

    assert response.status_code == 200
    data = response.data
    assert data["state"] == "active"
    assert data["reason"] == ""
    assert data["gate_open"] is True
    assert data["can_resume"] is True
    assert data["open_breakers"] == []
    assert [b["service"] for b in data["breakers"]] == SERVICES
    assert all(b["state"] == "closed" and b["failures"] == 0 and b["opened_at"] is None for b in data["breakers"])
    assert breaker(data, "apollo")["threshold"] == 3 and breaker(data, "apollo")["window"] == 60
    assert data["counts"] == {
        "running_campaigns": 1,
        "paused_campaigns": 1,
        "pending_jobs": 2,
        "processing_jobs": 1,
        "paused_jobs": 0,
    }
    assert latch_mirror() == "active"  # the gate rebuilt its mirror from the row


def test_a_successful_call_goes_through_and_counts_nothing(redis_client):
    assert guarded_call("apollo", lambda x: x * 2, 21) == 42
    assert redis_client.zcard(rkey("breaker", "apollo", "failures")) == 0


# --- a breaker trips --------------------------------------------------------------------------


def test_status_during_a_breaker_trip(
    platform_client, running_campaign_with_jobs, thresholds, latch_mirror, redis_client
):
    thresholds(apollo=1)
    campaign, jobs = running_campaign_with_jobs()

    fail_through_guard("apollo", ServerError("apollo", "502 Bad Gateway", 502))

    data = platform_client.get(STATUS).data
    assert data["state"] == "paused"
    assert data["reason"] == "breaker:apollo"
    assert data["changed_by"] == "system"
    assert data["gate_open"] is False
    assert data["can_resume"] is False
    assert data["open_breakers"] == ["apollo"]
    apollo = breaker(data, "apollo")
    assert apollo["state"] == "open"
    assert apollo["failures"] == 1 and apollo["threshold"] == 1
    assert apollo["opened_at"] is not None
    assert "502 Bad Gateway" in apollo["last_error"]
    assert all(b["state"] == "closed" for b in data["breakers"] if b["service"] != "apollo")
    assert data["counts"]["paused_campaigns"] == 1 and data["counts"]["paused_jobs"] == 3
    assert data["counts"]["running_campaigns"] == 0

    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("paused", "breaker:apollo")
    assert campaign.paused_at is not None
    assert set(Job.objects.values_list("status", flat=True)) == {"paused"}
    event = CampaignEvent.objects.get(campaign=campaign, action="campaign.paused")
    assert (event.from_status, event.to_status, event.actor_label) == ("running", "paused", "system")
    assert kinds() == ["breaker.opened", "queue.paused"]
    assert latch_mirror() == "paused"
    assert redis_client.hget(rkey("breaker", "apollo"), "state") == "open"


def test_calls_are_refused_without_running_while_paused(thresholds):
    thresholds(apollo=1)
    fail_through_guard("apollo", ServerError("apollo", "boom"))
    called = []

    for service in ("apollo", "openai"):
        with pytest.raises(QueuePaused):
            guarded_call(service, called.append, 1)

    assert called == []


def test_failures_open_the_breaker_only_at_the_threshold_within_the_window(thresholds, monkeypatch):
    thresholds(apollo=3)
    clock = [1_000_000.0]
    monkeypatch.setattr(breakers, "_now", lambda: clock[0])

    for at in (0, 30, 70):  # the first failure has left the 60 s window by the third
        clock[0] = 1_000_000.0 + at
        fail_through_guard("apollo", ServerError("apollo", "503"))
    assert QueueState.get().state == "active"
    assert breakers.breakers_read(["apollo"])["apollo"].failures == 2

    clock[0] = 1_000_000.0 + 80
    fail_through_guard("apollo", ServerError("apollo", "503"))
    assert QueueState.get().state == "paused"
    assert breakers.breakers_read(["apollo"])["apollo"].state == "open"


def test_a_bad_input_error_does_not_count(platform_client, thresholds, redis_client):
    thresholds(millionverifier=1)

    fail_through_guard("millionverifier", BadRequestError("millionverifier", "invalid email", 400))

    data = platform_client.get(STATUS).data
    assert data["state"] == "active"
    assert breaker(data, "millionverifier")["state"] == "closed"
    assert breaker(data, "millionverifier")["failures"] == 0
    assert redis_client.zcard(rkey("breaker", "millionverifier", "failures")) == 0
    assert kinds() == []


def test_a_bad_input_error_does_not_wipe_out_earlier_failures(thresholds):
    thresholds(openai=2)
    fail_through_guard("openai", ServerError("openai", "500"))
    fail_through_guard("openai", BadRequestError("openai", "prompt too long", 400))  # not a success either
    fail_through_guard("openai", ServerError("openai", "500"))

    assert QueueState.get().cause_display == "breaker:openai"


def test_quota_exhaustion_trips_at_once_even_with_a_higher_threshold(
    platform_client, thresholds, running_campaign_with_jobs
):
    thresholds(openai=5)
    campaign, _ = running_campaign_with_jobs()

    fail_through_guard("openai", QuotaExhaustedError("openai", "insufficient_quota", 429))

    data = platform_client.get(STATUS).data
    assert breaker(data, "openai")["state"] == "open"
    assert breaker(data, "openai")["failures"] == 1
    assert data["reason"] == "breaker:openai"
    campaign.refresh_from_db()
    assert campaign.pause_cause == "breaker:openai"
    opened = QueueEvent.objects.get(kind="breaker.opened")
    assert opened.details["trips_immediately"] is True


def test_connection_errors_without_provider_flags_count(thresholds):
    thresholds(smtp=2)
    fail_through_guard("smtp", TimeoutError("timed out"))
    fail_through_guard("smtp", ConnectionRefusedError("refused"))

    assert QueueState.get().cause_display == "breaker:smtp"


def test_a_programming_error_does_not_count(thresholds):
    thresholds(apollo=1)
    fail_through_guard("apollo", KeyError("oops"))

    assert QueueState.get().state == "active"


# --- reset and resume -------------------------------------------------------------------------


def test_resume_with_every_breaker_closed(platform_client, running_campaign_with_jobs, commit, latch_mirror, kicked):
    campaign, jobs = running_campaign_with_jobs()
    with commit():
        assert platform_client.post(PAUSE, {"reason": "deploying"}, format="json").status_code == 200
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("paused", "queue")
    assert QueueState.get().reason == "deploying"

    with commit():
        response = platform_client.post(RESUME)

    assert response.status_code == 200
    assert response.data["state"] == "active"
    assert response.data["changed_by"] == "admin"
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("running", "")
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}
    assert kicked == [str(campaign.pk)]
    assert latch_mirror() == "active"
    assert kinds() == ["queue.paused", "queue.resumed"]
    assert list(CampaignEvent.objects.filter(campaign=campaign).order_by("id").values_list("action", "reason")) == [
        ("campaign.paused", "queue paused: deploying"),
        ("campaign.running", "queue resumed"),
    ]


def test_resume_is_refused_while_a_breaker_is_open_and_nothing_changes(
    platform_client, running_campaign_with_jobs, commit, latch_mirror, kicked
):
    campaign, _ = running_campaign_with_jobs()
    breaker_trip(service="apollo", error="502 from Apollo")

    with commit():
        response = platform_client.post(RESUME)

    assert response.status_code == 409
    assert response.data["detail"] == "Cannot resume: circuit breaker apollo is open"
    assert response.data["open_breakers"] == ["apollo"]
    latch = QueueState.get()
    assert (latch.state, latch.cause_kind, latch.cause_service) == ("paused", "breaker", "apollo")
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("paused", "breaker:apollo")
    assert set(Job.objects.values_list("status", flat=True)) == {"paused"}
    assert kicked == []
    assert latch_mirror() == "paused"
    refused = QueueEvent.objects.get(kind="queue.resume_refused")
    assert refused.actor_label == "admin" and refused.details["open_breakers"] == ["apollo"]


def test_reset_closes_the_breaker_but_resumes_nothing(
    platform_client, running_campaign_with_jobs, commit, latch_mirror
):
    campaign, _ = running_campaign_with_jobs()
    breaker_trip(service="apollo")

    with commit():
        response = platform_client.post(reset_url("apollo"))

    assert response.status_code == 200
    assert response.data["state"] == "closed" and response.data["failures"] == 0
    status = platform_client.get(STATUS).data
    assert status["state"] == "paused" and status["reason"] == "breaker:apollo"
    assert status["can_resume"] is True
    assert status["gate_open"] is False
    campaign.refresh_from_db()
    assert campaign.status == "paused"
    assert set(Job.objects.values_list("status", flat=True)) == {"paused"}
    assert latch_mirror() == "paused"
    reset = QueueEvent.objects.get(kind="breaker.reset")
    assert (reset.service, reset.actor_label, reset.details["state"]) == ("apollo", "admin", "open")


def test_reset_of_an_unknown_service_is_404(platform_client):
    assert platform_client.post(reset_url("myspace")).status_code == 404
    assert kinds() == []


def test_resume_wakes_queue_breaker_and_job_pauses_but_not_manual_ones(platform_client, commit, kicked):
    running = CampaignFactory(status="running")
    running_job = JobFactory(campaign=running, status="pending")
    by_job = CampaignFactory(status="paused", pause_kind="job")
    by_job_job = JobFactory(campaign=by_job, status="paused")
    manual = CampaignFactory(status="paused", pause_kind="manual")
    manual_job = JobFactory(campaign=manual, status="paused")
    done = CampaignFactory(status="completed")
    done_job = JobFactory(campaign=done, status="completed")
    breaker_trip(service="instantly")
    platform_client.post(reset_url("instantly"))

    with commit():
        assert platform_client.post(RESUME).status_code == 200

    def state(obj):
        obj.refresh_from_db()
        return obj.status

    assert (state(running), state(running_job)) == ("running", "pending")
    assert (state(by_job), state(by_job_job)) == ("running", "pending")
    assert (state(manual), state(manual_job)) == ("paused", "paused")
    assert manual.pause_cause == "manual"
    assert (state(done), state(done_job)) == ("completed", "completed")
    assert sorted(kicked) == sorted([str(running.pk), str(by_job.pk)])


def test_status_reflects_each_change_at_once(platform_client, running_campaign_with_jobs, commit):
    running_campaign_with_jobs()

    def status():
        data = platform_client.get(STATUS).data
        return data["state"], data["open_breakers"], data["gate_open"], data["counts"]["paused_campaigns"]

    assert status() == ("active", [], True, 0)
    with commit():
        breaker_trip(service="smtp")
    assert status() == ("paused", ["smtp"], False, 1)
    with commit():
        platform_client.post(reset_url("smtp"))
    assert status() == ("paused", [], False, 1)
    with commit():
        platform_client.post(RESUME)
    assert status() == ("active", [], True, 0)
    with commit():
        platform_client.post(PAUSE)
    assert status() == ("paused", [], False, 1)


def test_several_breakers_fail_and_are_recovered_one_by_one(platform_client, running_campaign_with_jobs, commit):
    campaign, _ = running_campaign_with_jobs()
    for service in ("apollo", "openai", "smtp"):
        breaker_trip(service=service, error=f"{service} down")
    assert QueueState.get().cause_display == "breaker:apollo"  # the first one to trip names the pause
    assert kinds() == ["breaker.opened", "queue.paused", "breaker.opened", "breaker.opened"]
    refused = platform_client.post(RESUME)
    assert refused.status_code == 409
    assert refused.data["open_breakers"] == ["apollo", "openai", "smtp"]
    assert refused.data["detail"] == (
        "Cannot resume: circuit breaker apollo is open; Cannot resume: circuit breaker openai is open; "
        "Cannot resume: circuit breaker smtp is open"
    )

    for service, still_open in (("apollo", ["openai", "smtp"]), ("openai", ["smtp"])):
        platform_client.post(reset_url(service))
        refused = platform_client.post(RESUME)
        assert refused.status_code == 409
        assert refused.data["open_breakers"] == still_open
        for name in still_open:
            assert f"Cannot resume: circuit breaker {name} is open" in refused.data["detail"]
        campaign.refresh_from_db()
        assert campaign.status == "paused"

    platform_client.post(reset_url("smtp"))
    with commit():
        assert platform_client.post(RESUME).status_code == 200
    campaign.refresh_from_db()
    assert campaign.status == "running"
    assert QueueEvent.objects.filter(kind="queue.resume_refused").count() == 3


def test_a_second_pause_keeps_the_first_reason_and_writes_no_second_event(running_campaign_with_jobs):
    campaign, _ = running_campaign_with_jobs()
    queue_pause(service="apollo")
    queue_pause(service="openai")

    assert QueueState.get().cause_display == "breaker:apollo"
    assert kinds() == ["queue.paused"]
    assert CampaignEvent.objects.filter(campaign=campaign, action="campaign.paused").count() == 1


def test_a_repeated_pause_still_sweeps_what_started_running_since(running_campaign_with_jobs):
    queue_pause(service="apollo")
    straggler, jobs = running_campaign_with_jobs()  # slipped in between (e.g. a start racing the pause)

    queue_pause(service="openai")

    straggler.refresh_from_db()
    assert (straggler.status, straggler.pause_cause) == ("paused", "breaker:apollo")
    assert set(Job.objects.filter(campaign=straggler).values_list("status", flat=True)) == {"paused"}


@pytest.mark.parametrize("reason", ["x" * 501, "breaker:apollo"])
def test_the_pause_reason_is_validated(platform_client, reason):
    response = platform_client.post(PAUSE, {"reason": reason}, format="json")

    assert response.status_code == 400 and "reason" in response.data
    assert QueueState.get().state == "active"
    assert kinds() == []


def test_an_unknown_service_is_a_programming_error():
    with pytest.raises(ValueError, match="myspace"):
        guarded_call("myspace", print)


def test_breaker_list(platform_client):
    breaker_trip(service="perplexity", error="503")

    response = platform_client.get(BREAKERS)

    assert response.status_code == 200
    assert [(b["service"], b["state"]) for b in response.data] == [
        (s, "open" if s == "perplexity" else "closed") for s in SERVICES
    ]


# --- fail closed ------------------------------------------------------------------------------


def test_the_gate_fails_closed_when_redis_is_unreachable(platform_client, dead_redis):
    called = []
    assert QueueState.get().state == "active"

    assert gate_open() is False
    with pytest.raises(QueuePaused):
        guarded_call("apollo", called.append, 1)
    assert called == []

    data = platform_client.get(STATUS).data
    assert data["gate_open"] is False
    assert {b["state"] for b in data["breakers"]} == {"unknown"}
    response = platform_client.post(RESUME)
    assert response.status_code == 409
    assert "Cannot resume: circuit breaker apollo is unknown" in response.data["detail"]


def test_a_vanished_latch_key_does_not_read_active_when_the_row_says_paused(redis_client, latch_mirror):
    queue_pause(reason="manual")
    redis_client.delete(rkey("queue", "latch"))  # Redis restarted without persistence

    assert gate_open() is False
    assert latch_mirror() == "paused"  # rebuilt from the row


def test_activating_the_mirror_waits_for_the_commit(django_capture_on_commit_callbacks, latch_mirror):
    queue_pause(reason="manual")
    assert latch_mirror() == "paused"  # pausing does not wait

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        queue_resume(actor=None)
    assert QueueState.get().state == "active"
    assert latch_mirror() == "paused"  # not committed yet

    for callback in callbacks:
        callback()
    assert latch_mirror() == "active"


def test_a_vanished_breaker_key_is_rebuilt_open_from_history(platform_client, redis_client):
    breaker_trip(service="apollo", error="502")
    redis_client.delete(rkey("breaker", "apollo"), rkey("breaker", "apollo", "failures"))

    data = platform_client.get(STATUS).data

    assert breaker(data, "apollo")["state"] == "open"
    assert breaker(data, "apollo")["last_error"] == "502"
    assert platform_client.post(RESUME).status_code == 409
    assert redis_client.hget(rkey("breaker", "apollo"), "state") == "open"


def test_an_open_breaker_with_an_active_queue_pauses_it_on_the_next_call(redis_client):
    """If the pause after a trip failed (database down at that moment), the next call finishes it."""
    redis_client.hset(rkey("breaker", "openai"), mapping={"state": "open", "opened_at": "1", "last_error": "x"})
    called = []

    with pytest.raises(QueuePaused):
        guarded_call("openai", called.append, 1)

    assert called == []
    assert (QueueState.get().state, QueueState.get().cause_display) == ("paused", "breaker:openai")


# --- cost of the cascade ------------------------------------------------------------------------


def test_the_cascade_issues_the_same_statements_for_10_and_100_campaigns(commit):
    breaker_trip(service="apollo")  # warm: every breaker hash exists in Redis
    queue_resume_after_reset = []

    def measure(n: int) -> tuple[int, int]:
        for _ in range(n):
            campaign = CampaignFactory(status="running")
            JobFactory.create_batch(3, campaign=campaign, status="pending")
        with CaptureQueriesContext(connection) as paused:
            queue_pause(service="apollo")
        assert Campaign.objects.filter(status="running").count() == 0
        breaker_reset(service="apollo", actor=None)
        with CaptureQueriesContext(connection) as resumed:
            queue_resume(actor=None)
        assert Job.objects.filter(status="paused").count() == 0
        queue_resume_after_reset.append(Campaign.objects.filter(status="running").count())
        breaker_trip(service="apollo")
        return len(paused), len(resumed)

    small = measure(10)
    large = measure(100)

    assert small == large
    assert small[0] <= 10 and small[1] <= 10  # savepoint, latch, campaigns x3, jobs, event, release
    assert queue_resume_after_reset == [10, 110]


def test_the_trailing_slash_spelling_works_too(platform_client):
    assert platform_client.get(STATUS + "/").status_code == 200
    assert platform_client.post(RESUME + "/").status_code == 200


def test_the_openapi_schema_documents_the_design_paths(platform_client):
    paths = platform_client.get("/api/schema/", {"format": "json"}).json()["paths"]

    prefix = "/api/v1/queue-management/"
    assert {p for p in paths if p.startswith(prefix)} == {
        prefix + "status",
        prefix + "pause",
        prefix + "resume-service",
        prefix + "circuit-breakers",
        prefix + "circuit-breakers/{service}/reset",
    }
    assert "409" in paths[prefix + "resume-service"]["post"]["responses"]
