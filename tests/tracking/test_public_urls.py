from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.test import Client
from django.utils import timezone
from redis import ConnectionError as RedisConnectionError

from tests.factories import CampaignFactory, LeadFactory
from tracking.counters import counters_read
from tracking.models import EmailEvent, Link, Recipient, Suppression
from tracking.services import opens_drain
from tracking.views import PIXEL_GIF

pytestmark = pytest.mark.django_db

GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


@pytest.fixture
def recipient(campaign):
    lead = LeadFactory(campaign=campaign, email="dana@example.org", first_name="Dana")
    return Recipient.objects.create(
        campaign=campaign, lead=lead, email=lead.email, status="sent", sent_at=timezone.now() - timedelta(hours=1)
    )


@pytest.fixture
def link(campaign):
    return Link.objects.create(campaign=campaign, url="https://example.com/offer")


def assert_is_pixel(response):
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert "no-store" in response["Cache-Control"]
    assert response.content == PIXEL_GIF and len(PIXEL_GIF) == 43


# --- Open pixel --------------------------------------------------------------------------------


def test_the_pixel_records_a_human_open(client, recipient):
    response = client.get(f"/t/o/{recipient.token}.gif", HTTP_USER_AGENT=BROWSER)

    assert_is_pixel(response)
    assert opens_drain() == 1  # the pixel buffers opens in Redis; the beat task drains them
    event = EmailEvent.objects.get()
    assert (event.type, event.is_machine, event.recipient_id, event.campaign_id) == (
        "open",
        False,
        recipient.pk,
        recipient.campaign_id,
    )
    assert event.user_agent == BROWSER and event.ip == "127.0.0.1"
    recipient.refresh_from_db()
    assert recipient.first_opened_at == recipient.first_human_opened_at == event.occurred_at


@pytest.mark.parametrize("token", ["x" * 32, "short", "a" * 300, "bad%20token", "..%2F..%2Fetc"])
def test_the_pixel_answers_the_gif_for_unknown_tokens_and_records_nothing(client, recipient, token):
    assert_is_pixel(client.get(f"/t/o/{token}.gif"))
    assert opens_drain() == 0
    assert not EmailEvent.objects.exists()


def test_the_pixel_answers_the_gif_when_redis_and_the_database_fail(client, recipient, monkeypatch):
    def broken_redis(**kwargs):
        raise RedisConnectionError("connection refused")

    def broken(**kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr("tracking.services.open_buffer", broken_redis)
    monkeypatch.setattr("tracking.services.event_record_seen", broken)
    assert_is_pixel(client.get(f"/t/o/{recipient.token}.gif", HTTP_USER_AGENT=BROWSER))


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_USER_AGENT": GMAIL_PROXY},
        {"HTTP_USER_AGENT": "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"},
        {"HTTP_USER_AGENT": "Barracuda Sentinel (EE)"},
        {"HTTP_USER_AGENT": "curl/8.5.0"},
        {"HTTP_USER_AGENT": "python-requests/2.32"},
        {"HTTP_USER_AGENT": BROWSER, "HTTP_SEC_PURPOSE": "prefetch;prerender"},
        {"HTTP_USER_AGENT": BROWSER, "HTTP_PURPOSE": "prefetch"},
        {},
    ],
)
def test_proxy_scanner_and_prefetch_opens_are_kept_but_flagged(client, recipient, headers):
    assert_is_pixel(client.get(f"/t/o/{recipient.token}.gif", **headers))
    opens_drain()

    assert EmailEvent.objects.get().is_machine is True
    recipient.refresh_from_db()
    assert recipient.first_opened_at is not None and recipient.first_human_opened_at is None


def test_a_head_request_on_the_pixel_is_a_machine_open(client, recipient):
    assert client.head(f"/t/o/{recipient.token}.gif", HTTP_USER_AGENT=BROWSER).status_code == 200
    opens_drain()
    assert EmailEvent.objects.get().is_machine is True


# --- Click redirect ----------------------------------------------------------------------------


def test_a_click_redirects_to_the_stored_url_and_is_recorded(client, recipient, link):
    response = client.get(f"/t/c/{recipient.token}/{link.pk}", HTTP_USER_AGENT=BROWSER)

    assert response.status_code == 302 and response["Location"] == "https://example.com/offer"
    event = EmailEvent.objects.get()
    assert (event.type, event.link_id, event.is_machine) == ("click", link.pk, False)
    recipient.refresh_from_db()
    assert recipient.first_human_clicked_at == event.occurred_at


def test_a_click_seconds_after_sending_is_a_scanner(client, recipient, link):
    Recipient.objects.filter(pk=recipient.pk).update(sent_at=timezone.now() - timedelta(seconds=1))
    assert client.get(f"/t/c/{recipient.token}/{link.pk}", HTTP_USER_AGENT=BROWSER).status_code == 302
    assert EmailEvent.objects.get().is_machine is True


def test_a_url_in_the_query_is_never_followed(client, recipient, link):
    response = client.get(f"/t/c/{recipient.token}/{link.pk}?url=https://evil.example&next=//evil.example")
    assert response.status_code == 302 and response["Location"] == "https://example.com/offer"


def test_open_redirect_attempts_are_404(client, recipient, link, other_campaign):
    foreign = Link.objects.create(campaign=other_campaign, url="https://evil.example/phish")
    sibling = CampaignFactory(organization=recipient.campaign.organization)
    sibling_link = Link.objects.create(campaign=sibling, url="https://example.com/sibling")
    attempts = [
        f"/t/c/{recipient.token}/{foreign.pk}",  # another organization's link
        f"/t/c/{recipient.token}/{sibling_link.pk}",  # another campaign's link, same organization
        f"/t/c/{recipient.token}/999999",  # no such link
        f"/t/c/{recipient.token}//evil.example",
        f"/t/c/{recipient.token}/https://evil.example",
        f"/t/c/{recipient.token}/{link.pk}/https://evil.example",
        f"/t/c/{'x' * 32}/{link.pk}",  # unknown token
        "/t/c//evil.example",
    ]
    for path in attempts:
        assert client.get(path).status_code == 404, path
    assert not EmailEvent.objects.exists()


def test_a_stored_link_with_another_scheme_is_not_followed(client, recipient, campaign):
    link = Link.objects.create(campaign=campaign, url="javascript:alert(1)")
    assert client.get(f"/t/c/{recipient.token}/{link.pk}").status_code == 404


# --- Unsubscribe -------------------------------------------------------------------------------


def test_the_unsubscribe_link_shows_a_confirmation_page_and_changes_nothing(client, recipient):
    response = client.get(f"/t/u/{recipient.token}")

    assert response.status_code == 200
    assert b"dana@example.org" in response.content and b'<form method="post">' in response.content
    recipient.refresh_from_db()
    assert recipient.status == "sent" and not Suppression.objects.exists()


def test_names_are_escaped_on_the_unsubscribe_page(client, recipient, campaign):
    campaign.from_name = "<script>alert('from')</script>"
    campaign.save()
    recipient.lead.first_name = '<img src=x onerror="alert(1)">'
    recipient.lead.save()

    body = client.get(f"/t/u/{recipient.token}").content.decode()

    assert "<script>alert" not in body and "&lt;script&gt;alert(&#x27;from&#x27;)&lt;/script&gt;" in body
    assert "<img src=x" not in body and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in body


def test_one_click_unsubscribe_needs_no_csrf_token(recipient):
    mail_client = Client(enforce_csrf_checks=True)

    response = mail_client.post(
        f"/t/u/{recipient.token}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200 and b"You are unsubscribed" in response.content
    recipient.refresh_from_db()
    assert recipient.status == "unsubscribed"
    suppression = Suppression.objects.get()
    assert (suppression.email, suppression.reason, suppression.organization_id) == (
        "dana@example.org",
        "unsubscribed",
        recipient.campaign.organization_id,
    )
    assert EmailEvent.objects.get().type == "unsubscribe"


def test_unsubscribing_twice_suppresses_once(client, recipient):
    client.post(f"/t/u/{recipient.token}")
    client.post(f"/t/u/{recipient.token}")
    assert Suppression.objects.count() == 1
    recipient.refresh_from_db()
    assert recipient.status == "unsubscribed"


def test_repeated_unsubscribe_posts_record_one_unsubscribe_event(client, recipient):
    for _ in range(3):
        assert client.post(f"/t/u/{recipient.token}").status_code == 200
    assert EmailEvent.objects.filter(recipient=recipient, type="unsubscribe").count() == 1
    assert counters_read(campaign_id=recipient.campaign_id).get("event.unsubscribe") == 1


def test_an_unknown_unsubscribe_token_is_a_404_page(client, recipient):
    assert client.get(f"/t/u/{'y' * 32}").status_code == 404
    assert client.post(f"/t/u/{'y' * 32}").status_code == 404
    assert not Suppression.objects.exists()
