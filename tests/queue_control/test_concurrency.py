"""Races between workers and the latch, with real commits and one database connection per thread."""

import threading
import time

import pytest
from django.db import connection, transaction

from campaigns.models import Campaign, CampaignEvent, Job
from integrations.errors import ServerError
from queue_control.errors import QueuePaused
from queue_control.guard import guarded_call
from queue_control.models import QueueEvent, QueueState
from queue_control.services import queue_pause
from tests.factories import CampaignFactory, JobFactory

pytestmark = pytest.mark.django_db(transaction=True)


def in_thread(fn):
    """Run fn in a thread with its own database connection; return what it returned or raised."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 (handed back to the test)
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return outcome


def test_a_worker_racing_a_pause_never_starts_a_call_after_the_pause_commits():
    CampaignFactory(status="running")
    starts: list[float] = []
    refused = threading.Event()
    stop = threading.Event()

    def provider_call():
        starts.append(time.monotonic())
        time.sleep(0.001)

    def worker():
        while not stop.is_set():
            try:
                guarded_call("apollo", provider_call)
            except QueuePaused:
                refused.set()
        connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 5
    while not starts and time.monotonic() < deadline:  # the worker is busy calling the provider
        time.sleep(0.01)
    assert starts

    queue_pause(reason="manual")  # commits (no outer transaction in this test)
    committed_at = time.monotonic()
    assert refused.wait(5)
    time.sleep(0.05)  # the worker keeps trying after the commit
    stop.set()
    thread.join(5)

    assert all(started < committed_at for started in starts)

    # A fresh worker (its own connection) after the commit: refused, the provider never called.
    called = []
    outcome = in_thread(lambda: guarded_call("openai", called.append, 1))
    assert isinstance(outcome.get("error"), QueuePaused)
    assert called == []


def test_two_breakers_tripping_at_once_leave_one_consistent_paused_state(thresholds):
    thresholds(apollo=1, openai=1)
    campaigns = [CampaignFactory(status="running") for _ in range(5)]
    for campaign in campaigns:
        JobFactory.create_batch(4, campaign=campaign, status="pending")
    both_in_flight = threading.Barrier(2, timeout=5)

    def trip(service):
        def fail():
            both_in_flight.wait()  # both calls passed the gate; now both fail together
            raise ServerError(service, "503")

        return lambda: guarded_call(service, fail)

    threads = [threading.Thread(target=in_thread, args=(trip(s),)) for s in ("apollo", "openai")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    latch = QueueState.get()
    assert latch.state == "paused"
    assert (latch.cause_kind, latch.cause_service) in (("breaker", "apollo"), ("breaker", "openai"))
    assert QueueEvent.objects.filter(kind="queue.paused").count() == 1
    assert sorted(QueueEvent.objects.filter(kind="breaker.opened").values_list("service", flat=True)) == [
        "apollo",
        "openai",
    ]
    # Every campaign paused once, all with the reason the latch kept; every job paused.
    assert set(Campaign.objects.values_list("status", "pause_kind", "pause_service")) == {
        ("paused", "breaker", latch.cause_service)
    }
    assert CampaignEvent.objects.filter(action="campaign.paused").count() == len(campaigns)
    assert set(Job.objects.values_list("status", flat=True)) == {"paused"}


def started(fn) -> threading.Thread:
    """fn running in a thread with its own database connection, closed when it ends."""

    def run():
        try:
            fn()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def held_open(fn, held: threading.Event, release: threading.Event):
    """fn, then its transaction kept open (held set) until release: a slow committer."""

    def run():
        with transaction.atomic():
            fn()
            held.set()
            release.wait(10)

    return run


def test_a_start_and_a_queue_pause_cannot_interleave(org, alice):
    """A start checks the latch and then commits its campaign as running; a queue pause that
    committed in between would miss that campaign, left running under a paused queue (the smoke
    run saw it). The start holds the latch row to its commit, so the pause waits and sweeps it."""
    from campaigns.services import campaign_start

    QueueState.objects.update_or_create(pk=1, defaults={"state": QueueState.State.ACTIVE, "reason": ""})
    campaign = CampaignFactory(organization=org)
    checked, release = threading.Event(), threading.Event()

    starter = started(held_open(lambda: campaign_start(campaign_id=campaign.pk, actor=alice), checked, release))
    assert checked.wait(10)
    pauser = started(lambda: queue_pause(reason="maintenance", actor_label="test"))
    pauser.join(0.5)
    assert pauser.is_alive(), "the pause went past an open start"
    release.set()
    starter.join(10)
    pauser.join(10)
    assert not pauser.is_alive()
    campaign.refresh_from_db()
    assert (QueueState.get().state, campaign.status) == ("paused", "paused")


def test_a_campaign_action_takes_the_latch_before_the_campaign_row(org, alice):
    """The cascade's lock order (latch, then campaigns) in every campaign action too: an action
    waiting for the latch holds no campaign row yet, so a queue resume holding the latch and
    reaching for that campaign cannot deadlock with it."""
    from campaigns.services import campaign_pause

    QueueState.objects.update_or_create(pk=1, defaults={"state": QueueState.State.ACTIVE, "reason": ""})
    campaign = CampaignFactory(organization=org, status="running")
    latched, release = threading.Event(), threading.Event()

    # What queue_pause and queue_resume hold for their whole transaction.
    holder = started(held_open(lambda: QueueState.objects.select_for_update().get(pk=1), latched, release))
    assert latched.wait(10)
    actor = started(lambda: campaign_pause(campaign_id=campaign.pk, actor=alice))
    actor.join(0.5)
    assert actor.is_alive()  # waiting for the latch
    with transaction.atomic():  # and not holding the campaign: another transaction takes it at once
        assert Campaign.objects.select_for_update(nowait=True).filter(pk=campaign.pk).exists()
    release.set()
    holder.join(10)
    actor.join(10)
    campaign.refresh_from_db()
    assert campaign.status == "paused"
