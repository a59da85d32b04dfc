"""The pixel buffers opens in Redis; opens_drain (the beat task drain_opens) writes them in batches,
each once, with exact first-open timestamps and counters."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from campaigns_project.celery import app
from campaigns_project.redis import get_redis, rkey
from tests.factories import CampaignFactory
from tracking import tasks
from tracking.counters import counters_read
from tracking.models import EmailEvent, Recipient
from tracking.opens import _opens_channel, opens_drain, opens_pending

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
OPENS = rkey("tracking", "opens")

schedule = importlib.import_module("tracking.migrations.0002_opens_drain_periodic_task")


@pytest.fixture
def recipients(campaign):
    sent_at = timezone.now() - timedelta(hours=1)
    return [
        Recipient.objects.create(campaign=campaign, email=f"r{i}@example.org", status="sent", sent_at=sent_at)
        for i in range(3)
    ]


def open_(client, recipient, user_agent=BROWSER):
    response = client.get(f"/t/o/{recipient.token}.gif", HTTP_USER_AGENT=user_agent)
    assert response.status_code == 200 and response["Content-Type"] == "image/gif"


def open_counters(campaign):
    return {m: n for m, n in counters_read(campaign_id=campaign.pk).items() if m.endswith(("open", "open.human"))}


def test_the_pixel_answers_the_gif_and_buffers_the_open_in_redis(client, recipients):
    open_(client, recipients[0])

    [raw] = get_redis().lrange(OPENS, 0, -1)
    tag, entry_id, token, at, machine, ip, user_agent = raw.split("\x1f")
    assert (tag, len(entry_id), token) == ("o1", 32, recipients[0].token)
    assert abs(float(at) - timezone.now().timestamp()) < 5
    assert (machine, user_agent, ip) == ("0", BROWSER, "127.0.0.1")
    assert not EmailEvent.objects.exists()  # written by the drain, not by the request


def test_the_pixels_one_way_connection_reconnects_after_losing_redis(client, recipients):
    open_(client, recipients[0])
    redis = get_redis()
    # This process's own one-way connection, killed by its socket's address: no listing of the
    # server's clients, which other processes sharing the Redis server also have.
    host, port = _opens_channel().connection._sock.getsockname()[:2]
    assert redis.llen(OPENS) == 1

    assert redis.client_kill(f"{host}:{port}")  # Redis restarted, or the connection dropped
    for _ in range(3):  # the first send may still go into the dead socket; then it reconnects
        open_(client, recipients[1])
        if redis.llen(OPENS) > 1:
            break

    assert redis.llen(OPENS) == 2
    assert opens_drain() == 2


def test_malformed_entries_are_dropped_and_the_rest_recorded(client, recipients):
    get_redis().rpush(OPENS, "o1\x1fshort", "o1\x1fid\x1ftok\x1fnot-a-time\x1f0\x1f\x1fua", "{not json")
    open_(client, recipients[0])

    assert opens_drain() == 1
    assert opens_pending() == 0 and EmailEvent.objects.get().recipient_id == recipients[0].pk


def test_the_drain_records_events_first_opens_and_exact_counters(client, campaign, recipients):
    first, second, _ = recipients
    open_(client, first, GMAIL_PROXY)  # a machine open first...
    open_(client, first)  # ...then the human one
    open_(client, first)
    open_(client, second, GMAIL_PROXY)

    assert opens_drain() == 4
    assert opens_pending() == 0
    events = list(EmailEvent.objects.order_by("id"))
    assert [(e.recipient_id, e.is_machine, e.source, e.type) for e in events] == [
        (first.pk, True, "pixel", "open"),
        (first.pk, False, "pixel", "open"),
        (first.pk, False, "pixel", "open"),
        (second.pk, True, "pixel", "open"),
    ]
    assert all(e.user_agent and e.ip == "127.0.0.1" and len(e.provider_event_id) == 32 for e in events)
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.first_opened_at == events[0].occurred_at
    assert first.first_human_opened_at == events[1].occurred_at
    assert second.first_opened_at == events[3].occurred_at and second.first_human_opened_at is None
    assert open_counters(campaign) == {
        "event.open": 4,
        "event.open.human": 2,
        "unique.open": 2,
        "unique.open.human": 1,
    }

    open_(client, second)  # a later human open of an already opened message
    assert opens_drain() == 1
    assert open_counters(campaign) == {
        "event.open": 5,
        "event.open.human": 3,
        "unique.open": 2,
        "unique.open.human": 2,
    }


def test_a_batch_drained_twice_records_each_open_once(client, campaign, recipients):
    for recipient in recipients:
        open_(client, recipient)
    entries = get_redis().lrange(OPENS, 0, -1)
    get_redis().rpush(OPENS, *entries)  # the same entries twice in one batch

    assert opens_drain() == 3
    # A crash between the commit and the LTRIM: the next drain finds the same entries again.
    get_redis().rpush(OPENS, *entries)
    assert opens_drain() == 0

    assert opens_pending() == 0
    assert EmailEvent.objects.count() == 3
    assert open_counters(campaign) == {
        "event.open": 3,
        "event.open.human": 3,
        "unique.open": 3,
        "unique.open.human": 3,
    }


def test_an_unknown_token_records_nothing_and_leaves_the_buffer(client, recipients):
    assert client.get(f"/t/o/{'x' * 32}.gif").status_code == 200
    assert opens_pending() == 1

    assert opens_drain() == 0
    assert opens_pending() == 0 and not EmailEvent.objects.exists()


def test_opens_of_several_campaigns_are_counted_per_campaign(client, campaign, recipients, org):
    other = CampaignFactory(organization=org, status="running")
    stranger = Recipient.objects.create(campaign=other, email="s@example.org", status="sent")
    open_(client, recipients[0])
    open_(client, stranger, GMAIL_PROXY)

    assert opens_drain() == 2
    assert open_counters(campaign) == {"event.open": 1, "event.open.human": 1, "unique.open": 1, "unique.open.human": 1}
    assert open_counters(other) == {"event.open": 1, "unique.open": 1}


def test_a_drain_waits_for_the_one_holding_the_lock(client, recipients):
    open_(client, recipients[0])
    get_redis().set(rkey("tracking", "opens", "drain-lock"), "someone-else", ex=60)

    assert opens_drain() == 0
    assert opens_pending() == 1 and not EmailEvent.objects.exists()


def test_the_task_drains_batch_after_batch_until_the_buffer_is_empty(client, recipients, monkeypatch):
    monkeypatch.setattr(tasks, "opens_drain", lambda: opens_drain(batch_size=2))
    for recipient in recipients:
        open_(client, recipient)
        open_(client, recipient)

    assert tasks.drain_opens() == 6
    assert opens_pending() == 0 and EmailEvent.objects.count() == 6


@pytest.fixture
def redis_down(settings):
    get_redis.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused
    yield
    get_redis.cache_clear()


def test_without_redis_the_pixel_records_the_open_directly(client, campaign, recipients, redis_down):
    open_(client, recipients[0], GMAIL_PROXY)
    open_(client, recipients[0])

    events = list(EmailEvent.objects.order_by("id"))
    assert [(e.is_machine, e.source) for e in events] == [(True, "tracking"), (False, "tracking")]
    recipients[0].refresh_from_db()
    assert recipients[0].first_opened_at == events[0].occurred_at
    assert recipients[0].first_human_opened_at == events[1].occurred_at
    assert open_counters(campaign) == {
        "event.open": 2,
        "event.open.human": 1,
        "unique.open": 1,
        "unique.open.human": 1,
    }


def test_the_migration_creates_the_drain_beat_row_once_and_keeps_edits():
    PeriodicTask.objects.filter(name=schedule.NAME).delete()
    schedule.create_periodic_task(django_apps, None)
    PeriodicTask.objects.filter(name=schedule.NAME).update(enabled=False)
    schedule.create_periodic_task(django_apps, None)

    row = PeriodicTask.objects.get(name=schedule.NAME)
    assert (row.task, row.interval.every, row.interval.period) == ("tracking.tasks.drain_opens", 2, "seconds")
    assert row.expire_seconds == schedule.EXPIRE_SECONDS and row.enabled is False
    assert PeriodicTasks.objects.get(ident=1).last_update is not None
    assert row.task in app.tasks
