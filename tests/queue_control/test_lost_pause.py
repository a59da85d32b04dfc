"""An open breaker always means a paused queue, even when the pause after the trip fails on the
database: the trip tries again, and whoever next finds the breaker open beside an active latch (the
sweeper, a job the gate refused) finishes the pause. Nothing here ever resumes anything."""

import pytest
from django.db import OperationalError

from campaigns import sweeper
from campaigns.models import Campaign, Job
from queue_control.models import QueueEvent, QueueState
from queue_control.selectors import breaker_get
from queue_control.services import PAUSE_ATTEMPTS, queue_pause_for_open_breakers
from tests.breakers import breaker_trip, cascade_fails
from tests.factories import CampaignFactory, JobFactory
from tracking import outbound
from tracking.models_outbound import WebhookDelivery, WebhookEndpoint

# The trip's retries run only outside a transaction, as in a worker.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running(org):
    QueueState.objects.update_or_create(pk=1, defaults={"state": QueueState.State.ACTIVE, "reason": ""})
    campaign = CampaignFactory(organization=org, status="running")
    JobFactory(campaign=campaign, status="pending")
    return campaign


def statuses(campaign):
    return (
        QueueState.get().state,
        Campaign.objects.get(pk=campaign.pk).status,
        set(Job.objects.filter(campaign=campaign).values_list("status", flat=True)),
    )


def test_a_pause_lost_to_a_passing_database_error_is_tried_again(running):
    with cascade_fails(1) as left:
        assert breaker_trip(service="millionverifier")
    assert left == [0]  # the first pause did fail
    assert statuses(running) == ("paused", "paused", {"paused"})
    latch = QueueState.get()
    assert (latch.cause_kind, latch.cause_service) == ("breaker", "millionverifier")
    assert QueueEvent.objects.filter(kind=QueueEvent.Kind.BREAKER_OPENED).count() == 1
    assert QueueEvent.objects.filter(kind=QueueEvent.Kind.QUEUE_PAUSED).count() == 1


def test_a_pause_the_database_keeps_refusing_is_finished_by_the_next_sweep(running):
    with cascade_fails(PAUSE_ATTEMPTS), pytest.raises(OperationalError):
        breaker_trip(service="millionverifier")
    assert breaker_get(service="millionverifier")["state"] == "open"
    assert statuses(running) == ("active", "running", {"pending"})  # the lost pause

    sweeper.engine_sweep()
    assert statuses(running) == ("paused", "paused", {"paused"})
    assert QueueState.get().cause_service == "millionverifier"
    sweeper.engine_sweep()  # and it stays so: the sweeper pauses, it never resumes
    assert statuses(running) == ("paused", "paused", {"paused"})
    assert QueueEvent.objects.filter(kind=QueueEvent.Kind.QUEUE_PAUSED).count() == 1
    [opened] = QueueEvent.objects.filter(kind=QueueEvent.Kind.BREAKER_OPENED)  # the history has the trip
    assert opened.service == "millionverifier" and opened.details["recorded_after_a_lost_pause"]


def test_with_every_breaker_closed_the_check_changes_nothing(running):
    assert queue_pause_for_open_breakers() == ""
    sweeper.engine_sweep()
    assert statuses(running) == ("active", "running", {"pending"})
    assert not QueueEvent.objects.exists()


def test_an_endpoint_deleted_behind_the_subscriptions_cache_cannot_break_the_pause(running, org):
    """Another process deleted a webhook endpoint a moment ago; this one's subscriptions cache
    still names it (it is reloaded within OUTGOING_WEBHOOK_SUBSCRIPTIONS_TTL). The breaker's
    events must not insert a delivery to it: that would fail the pause's transaction at commit."""
    endpoint = WebhookEndpoint.objects.create(
        organization=org, url="https://hooks.example.com/ops", event_types=["breaker.opened", "queue.paused"]
    )
    kept = WebhookEndpoint.objects.create(
        organization=org, url="https://hooks.example.com/kept", event_types=["queue.paused"]
    )
    assert sorted(outbound.subscribers("queue.paused", None)) == sorted([endpoint.pk, kept.pk])  # cached
    WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()  # as another process would

    assert breaker_trip(service="millionverifier")
    assert statuses(running) == ("paused", "paused", {"paused"})
    assert list(WebhookDelivery.objects.values_list("endpoint_id", "event__type")) == [(kept.pk, "queue.paused")]
