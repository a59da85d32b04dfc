"""Outgoing webhooks delivered over real HTTP to a local receiver (pytest-httpserver): signed as
Standard Webhooks (verified with the reference library), exactly the events subscribed, retried
with backoff for a bounded time, given up, replayed, the endpoint disabled and its organization
told; no request to an address it may not reach; never a provider breaker."""

import json
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks.webhooks import Webhook
from werkzeug import Response

from campaigns import services as campaign_services
from queue_control import services as queue_services
from queue_control.selectors import breakers_not_closed, queue_is_active
from tests.breakers import breaker_trip
from tracking import outbound
from tracking.models import Link, Recipient, WebhookDelivery, WebhookEndpoint
from tracking.services import open_buffer, opens_drain, recipients_mark_sent

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


@pytest.fixture(autouse=True)
def fresh_subscriptions(settings):
    settings.OUTGOING_WEBHOOK_SUBSCRIPTIONS_TTL = 0
    settings.OUTGOING_WEBHOOK_RETRY_BASE_SECONDS = 0.2
    settings.OUTGOING_WEBHOOK_TIMEOUT_SECONDS = 3
    outbound.subscriptions_invalidate()


@pytest.fixture
def receiver(httpserver):
    """The integrator's endpoint: records every request, answers 200 unless told otherwise."""
    httpserver.expect_request("/hooks").respond_with_handler(lambda request: Response("ok", 200))
    return httpserver


def received(httpserver) -> list[tuple[dict, dict]]:
    return [(json.loads(request.get_data()), dict(request.headers)) for request, _ in httpserver.log]


def endpoint_for(org, receiver, *event_types) -> WebhookEndpoint:
    return outbound.endpoint_create(organization=org, url=receiver.url_for("/hooks"), event_types=list(event_types))


def deliver_all() -> dict:
    totals = {"delivered": 0, "failed": 0, "deferred": 0}
    for _ in range(20):
        counts = outbound.webhooks_deliver_due()
        for key in totals:
            totals[key] += counts[key]
        if not any(counts.values()):
            return totals
    return totals


@pytest.mark.django_db(transaction=True)
def test_a_receiver_gets_exactly_the_events_it_subscribed_to_signed(org, alice, running_campaign, receiver):
    endpoint = endpoint_for(org, receiver, "campaign.status_changed", "breaker.opened")
    campaign_services.campaign_pause(campaign_id=running_campaign.pk, actor=alice, reason="lunch")
    queue_services.queue_pause(reason="maintenance", actor=alice)  # queue.paused: not subscribed
    breaker_trip(service="openai")
    assert deliver_all()["delivered"] == 2

    bodies = received(receiver)
    assert [body["type"] for body, _ in bodies] == ["campaign.status_changed", "breaker.opened"]
    status, breaker = (body for body, _ in bodies)
    assert status["data"]["campaign"]["id"] == str(running_campaign.pk)
    assert (status["data"]["from_status"], status["data"]["to_status"], status["data"]["reason"]) == (
        "running",
        "paused",
        "lunch",
    )
    assert breaker["data"]["service"] == "openai"
    for request, _ in receiver.log:  # the reference library accepts our signature
        verified = Webhook(endpoint.secret).verify(request.get_data(), dict(request.headers))
        assert verified["id"] == request.headers["webhook-id"]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}


@pytest.mark.django_db(transaction=True)
def test_the_queue_cascade_tells_each_organization_of_its_own_campaigns(org, other_org, alice, receiver, httpserver):
    from tests.factories import CampaignFactory

    ours = CampaignFactory(organization=org, status="running", phase="verification")
    CampaignFactory(organization=other_org, status="running", phase="verification")
    endpoint_for(org, receiver, "campaign.status_changed", "queue.paused")
    queue_services.queue_pause(reason="maintenance", actor=alice)
    deliver_all()
    types = sorted((body["type"], body["data"].get("campaign", {}).get("id")) for body, _ in received(receiver))
    assert types == [("campaign.status_changed", str(ours.pk)), ("queue.paused", None)]


@pytest.mark.django_db(transaction=True)
def test_emails_sent_clicked_and_opened_go_out_with_their_recipient(org, running_campaign, receiver, client):
    endpoint_for(org, receiver, "email.sent", "email.clicked", "email.opened")
    recipient = Recipient.objects.create(
        campaign=running_campaign, email="lee@example.org", status="sending", send_job_id=7
    )
    recipients_mark_sent(campaign_id=running_campaign.pk, job_id=7, sent={recipient.pk: ("<m1@x>", timezone.now())})
    link = Link.objects.create(campaign=running_campaign, url="https://acme.example/offer")
    assert client.get(f"/t/c/{recipient.token}/{link.pk}", HTTP_USER_AGENT=BROWSER).status_code == 302
    open_buffer(token=recipient.token, is_machine=False, user_agent=BROWSER)
    time.sleep(0.1)  # the pixel's RPUSH is sent without waiting for Redis
    assert opens_drain() == 1
    deliver_all()
    bodies = {body["type"]: body["data"] for body, _ in received(receiver)}
    assert set(bodies) == {"email.sent", "email.clicked", "email.opened"}
    assert bodies["email.sent"]["recipient"] == {"id": recipient.pk, "email": "lee@example.org"}
    assert bodies["email.sent"]["message_id"] == "<m1@x>"
    assert bodies["email.clicked"]["url"] == "https://acme.example/offer"
    assert bodies["email.opened"]["source"] == "pixel" and bodies["email.opened"]["is_machine"] is False


@pytest.mark.django_db(transaction=True)
def test_a_failing_endpoint_is_retried_with_backoff_and_the_same_event_id(org, alice, running_campaign, httpserver):
    answers = iter([Response("down", 503), Response("down", 503), Response("ok", 200)])
    httpserver.expect_request("/hooks").respond_with_handler(lambda request: next(answers))
    endpoint_for(org, httpserver, "campaign.status_changed")
    campaign_services.campaign_pause(campaign_id=running_campaign.pk, actor=alice)

    assert deliver_all() == {"delivered": 0, "failed": 1, "deferred": 0}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 503)
    assert deliver_all()["failed"] == 0  # within the endpoint's backoff: nothing is attempted
    time.sleep(0.25)
    assert deliver_all()["failed"] == 1
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.consecutive_failures == 2 and endpoint.failing_since is not None
    time.sleep(0.45)  # the backoff doubled
    assert deliver_all()["delivered"] == 1
    ids = {headers["Webhook-Id"] for _, headers in received(httpserver)}
    assert len(ids) == 1 and len(httpserver.log) == 3  # at least once, and de-duplicable
    endpoint.refresh_from_db()
    assert (endpoint.consecutive_failures, endpoint.failing_since) == (0, None)
    assert breakers_not_closed() == {} and queue_is_active()  # a customer's URL is no provider


@pytest.mark.django_db(transaction=True)
def test_a_dead_endpoint_is_probed_once_per_backoff_not_once_per_event(org, alice, httpserver):
    from tests.factories import CampaignFactory

    httpserver.expect_request("/hooks").respond_with_handler(lambda request: Response("down", 500))
    endpoint_for(org, httpserver, "campaign.status_changed")
    for _ in range(5):
        campaign = CampaignFactory(organization=org, status="running", phase="verification")
        campaign_services.campaign_pause(campaign_id=campaign.pk, actor=alice)
    assert deliver_all() == {"delivered": 0, "failed": 1, "deferred": 4}
    assert len(httpserver.log) == 1


@pytest.mark.django_db(transaction=True)
def test_retries_stop_after_their_window_and_an_operator_can_replay(org, alice, running_campaign, httpserver, settings):
    answers = iter([Response("down", 500), Response("ok", 200)])
    httpserver.expect_request("/hooks").respond_with_handler(lambda request: next(answers))
    endpoint_for(org, httpserver, "campaign.status_changed")
    campaign_services.campaign_pause(campaign_id=running_campaign.pk, actor=alice)
    deliver_all()
    outbound.webhooks_upkeep(now=timezone.now() + timedelta(seconds=settings.OUTGOING_WEBHOOK_RETRY_FOR_SECONDS + 1))
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and "retry window" in delivery.last_error

    outbound.delivery_replay(delivery=delivery)
    assert deliver_all()["delivered"] == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    first, replayed = (headers["Webhook-Id"] for _, headers in received(httpserver))
    assert first == replayed


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_failing_for_too_long_is_disabled_and_its_organization_told(
    org, alice, running_campaign, httpserver, settings
):
    settings.OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS = 1
    httpserver.expect_request("/hooks").respond_with_handler(lambda request: Response("down", 500))
    endpoint = endpoint_for(org, httpserver, "campaign.status_changed")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(seconds=5))
    campaign_services.campaign_pause(campaign_id=running_campaign.pk, actor=alice)
    deliver_all()

    endpoint.refresh_from_db()
    assert not endpoint.is_active and "No successful delivery since" in endpoint.disabled_reason
    assert WebhookDelivery.objects.get().status == "failed"
    [message] = mail.outbox
    assert message.to == [alice.email] and endpoint.url in message.subject
    campaign_services.campaign_resume(campaign_id=running_campaign.pk, actor=alice)
    assert WebhookDelivery.objects.count() == 1  # a disabled endpoint gets no new events


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:127.0.0.1]/x",
        "http://localhost:8000/x",
        "http://user:pass@hooks.example/x",
        "http://0.0.0.0/x",
    ],
)
def test_urls_to_private_or_local_addresses_are_refused_unless_allowed(url, settings):
    settings.OUTGOING_WEBHOOK_ALLOWED_NETWORKS = []
    assert outbound.url_refusal(url)


def test_public_urls_are_accepted(settings):
    settings.OUTGOING_WEBHOOK_ALLOWED_NETWORKS = []
    assert outbound.url_refusal("https://hooks.example.com/in") == ""
    assert outbound.url_refusal("http://93.184.216.34/in") == ""


@pytest.mark.django_db(transaction=True)
def test_a_delivery_never_connects_to_an_address_it_may_not_reach(org, alice, running_campaign, receiver, settings):
    endpoint_for(org, receiver, "campaign.status_changed")
    settings.OUTGOING_WEBHOOK_ALLOWED_NETWORKS = []  # the receiver is on loopback: no longer allowed
    campaign_services.campaign_pause(campaign_id=running_campaign.pk, actor=alice)
    deliver_all()
    delivery = WebhookDelivery.objects.get()
    assert delivery.last_error.startswith("Refused to connect") and delivery.last_status_code is None
    assert len(receiver.log) == 0


def test_deliveries_run_on_their_own_queue(settings):
    from campaigns_project.celery import app

    for task in ("tracking.tasks.deliver_webhooks", "tracking.tasks.webhooks_upkeep"):
        assert app.amqp.router.route({}, task)["queue"].name == settings.CELERY_QUEUE_NAMES["webhooks"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_on_the_webhooks_queue_delivers_right_after_commit(org, alice, running_campaign, receiver):
    from celery.contrib.testing.worker import start_worker

    from campaigns_project.celery import app

    endpoint_for(org, receiver, "campaign.status_changed")
    app.control.purge()
    with start_worker(app, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30):
        campaign_services.campaign_pause(campaign_id=running_campaign.pk, actor=alice)
        deadline = time.monotonic() + 15
        while not receiver.log and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(receiver.log) == 1
    assert WebhookDelivery.objects.get().status == "delivered"
