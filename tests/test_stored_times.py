"""No stored value can break a page later (issue 11, point 3): a provider's event time is checked
on the way in, and a time already stored beyond Python's range reads as the nearest one."""

import json
import time

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import CampaignFactory
from tracking.models import EmailEvent, Recipient
from tracking.webhooks import VERIFIERS

pytestmark = pytest.mark.django_db

FAR_FUTURE = "9999-12-31T23:59:59-14:00"  # year 10000 in UTC: PostgreSQL stores it, Python cannot read it


@pytest.fixture
def campaign(org):
    return CampaignFactory(organization=org, status="running", phase="outreach")


@pytest.fixture
def recipient(campaign):
    return Recipient.objects.create(campaign=campaign, email="erin@example.org", status="sent", message_id="<m.1@x>")


def signed_post(payload: dict):
    body = json.dumps(payload).encode()
    headers = VERIFIERS["generic"].sign(body=body, msg_id=payload["event_id"], timestamp=int(time.time()))
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    return APIClient().post("/api/v1/webhooks/generic/", body, content_type="application/json", **meta)


@pytest.mark.parametrize("occurred_at", [FAR_FUTURE, "0001-01-01T00:00:00+01:00", "2001-01-01T00:00:00Z"])
def test_a_webhook_event_time_outside_the_window_is_recorded_at_receipt_and_said_so(recipient, occurred_at):
    before = timezone.now()
    response = signed_post({"event_id": "e1", "type": "open", "message_id": "<m.1@x>", "occurred_at": occurred_at})

    assert response.status_code == 200
    body = response.json()
    assert body["recorded"] is True and "outside the accepted window" in body["notes"][0]
    event = EmailEvent.objects.get()
    assert before <= event.occurred_at <= timezone.now()


def test_after_a_hostile_event_time_every_page_still_answers(alice_client, admin_client_logged_in, campaign, recipient):
    signed_post({"event_id": "e1", "type": "click", "message_id": "<m.1@x>", "occurred_at": FAR_FUTURE})
    for url in (
        f"/api/v1/campaigns/{campaign.pk}/recipients/",
        f"/api/v1/campaigns/{campaign.pk}/analytics/",
        f"/api/v1/campaigns/tracking/{recipient.pk}/events/",
    ):
        assert alice_client.get(url).status_code == 200, url
    for url in ("/admin/tracking/recipient/", "/admin/tracking/emailevent/"):
        assert admin_client_logged_in.get(url).status_code == 200, url


def test_an_integrators_event_time_outside_the_window_is_a_400(alice_client, recipient):
    response = alice_client.post(
        f"/api/v1/campaigns/tracking/{recipient.pk}/open/", {"occurred_at": FAR_FUTURE}, format="json"
    )
    assert response.status_code == 400 and "occurred_at" in response.json()
    response = alice_client.post(
        f"/api/v1/campaigns/tracking/{recipient.pk}/open/", {"occurred_at": "2001-01-01T00:00:00Z"}, format="json"
    )
    assert response.status_code == 400 and "occurred_at" in response.json()
    assert not EmailEvent.objects.exists()


def test_a_time_stored_beyond_pythons_range_reads_as_the_latest_instant(
    alice_client, admin_client_logged_in, campaign, recipient
):
    """Rows written before the checks (or by hand): the readers clamp instead of raising."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tracking_emailevent (recipient_id, campaign_id, type, occurred_at, user_agent, is_machine,"
            " source, payload) VALUES (%s, %s, 'open', %s::timestamptz, '', false, 'api', '{}')",
            [recipient.pk, campaign.pk, FAR_FUTURE],
        )
        cursor.execute(
            "UPDATE tracking_recipient SET first_opened_at = 'infinity', sent_at = '-infinity' WHERE id = %s",
            [recipient.pk],
        )
    events = alice_client.get(f"/api/v1/campaigns/tracking/{recipient.pk}/events/")
    assert events.status_code == 200
    assert events.json()["results"][0]["occurred_at"].startswith("9999-12-31T23:59:59")
    recipients = alice_client.get(f"/api/v1/campaigns/{campaign.pk}/recipients/")
    assert recipients.status_code == 200
    assert recipients.json()["results"][0]["sent_at"].startswith("0001-01-01")
    assert alice_client.get(f"/api/v1/campaigns/{campaign.pk}/analytics/").status_code == 200
    for url in ("/admin/tracking/recipient/", "/admin/tracking/emailevent/"):
        assert admin_client_logged_in.get(url).status_code == 200, url
