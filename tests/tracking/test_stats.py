from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.tasks import sync_instantly_analytics
from integrations.errors import ServerError
from integrations.sandbox import InstantlySandbox
from tests.factories import CampaignFactory
from tracking.counters import counters_derive, counters_read, counters_rebuild
from tracking.models import Link, Recipient
from tracking.selectors import campaign_analytics, campaign_stats
from tracking.services import event_record, event_record_seen, recipients_transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(campaign):
    """Five recipients sent an hour ago: r0..r4."""
    recipients = Recipient.objects.bulk_create(
        [Recipient(campaign=campaign, email=f"r{i}@example.org", status="sending") for i in range(5)]
    )
    recipients_transition(
        campaign_id=campaign.pk,
        to_status="sent",
        ids=[r.pk for r in recipients],
        sent_at=timezone.now() - timedelta(hours=1),
    )
    return recipients


@pytest.fixture
def events(campaign, sent):
    r0, r1, r2, r3, r4 = sent
    link = Link.objects.create(campaign=campaign, url="https://example.com/a")
    other = Link.objects.create(campaign=campaign, url="https://example.com/b")
    for recipient_id, machine in [(r0.pk, False), (r0.pk, False), (r0.pk, True), (r1.pk, True), (r2.pk, False)]:
        event_record(type="open", recipient_id=recipient_id, is_machine=machine)
    for recipient_id, machine, link_id in [(r0.pk, False, link.pk), (r1.pk, True, link.pk), (r1.pk, True, other.pk)]:
        event_record(type="click", recipient_id=recipient_id, is_machine=machine, link_id=link_id)
    event_record(type="reply", recipient_id=r0.pk)
    event_record(type="bounce", recipient_id=r4.pk)
    event_record(type="unsubscribe", recipient_id=r2.pk)
    event_record(type="complain", recipient_id=r2.pk)  # after unsubscribing: both are counted
    event_record(type="complain", recipient_id=r3.pk)
    return link, other


def test_stats_are_exact_on_a_known_set_of_events(campaign, events):
    stats = campaign_stats(campaign=campaign)

    assert stats["sent"] == 5 and stats["bounces"] == 1 and stats["delivered"] == 4
    assert stats["opens"] == {"unique": 2, "total": 3, "unique_raw": 3, "total_raw": 5}
    assert stats["clicks"] == {"unique": 1, "total": 1, "unique_raw": 2, "total_raw": 3}
    assert (stats["replies"], stats["unsubscribes"], stats["complaints"], stats["failed"]) == (1, 1, 2, 0)
    assert stats["rates"]["open"] == 0.5 and stats["rates"]["open_raw"] == 0.75
    assert stats["rates"]["click"] == 0.25 and stats["rates"]["bounce"] == 0.2


def test_stats_of_a_campaign_without_events_are_zero(campaign):
    stats = campaign_stats(campaign=campaign)
    assert stats["sent"] == 0 and stats["opens"]["unique"] == 0 and stats["rates"]["open"] == 0.0


def test_stats_cost_one_query_whatever_the_volume(campaign, events, django_assert_num_queries):
    with django_assert_num_queries(1):
        campaign_stats(campaign=campaign)


def test_the_counters_match_the_figures_derived_from_the_events(campaign, events):
    assert counters_read(campaign_id=campaign.pk) == counters_derive(campaign_id=campaign.pk)
    before = campaign_stats(campaign=campaign)
    counters_rebuild(campaign_id=campaign.pk)
    assert campaign_stats(campaign=campaign) == before


def test_a_repeated_unsubscribe_or_bounce_counts_the_recipient_once(campaign, sent):
    event_record(type="unsubscribe", recipient_id=sent[0].pk)
    event_record(type="unsubscribe", recipient_id=sent[0].pk)
    assert campaign_stats(campaign=campaign)["unsubscribes"] == 1


def test_stats_of_one_campaign_ignore_the_others(campaign, events, org):
    other = CampaignFactory(organization=org)
    assert campaign_stats(campaign=other)["sent"] == 0


def test_the_stats_endpoint(alice_client, campaign, events):
    response = alice_client.get(f"/api/v1/campaigns/{campaign.pk}/stats")
    assert response.status_code == 200 and response.json()["opens"]["unique"] == 2


def test_analytics_has_time_buckets_and_top_links(alice_client, campaign, events):
    link, other = events
    body = alice_client.get(f"/api/v1/campaigns/{campaign.pk}/analytics").json()

    [hour] = body["hourly"]
    assert (hour["open"], hour["open_human"], hour["click"], hour["click_human"]) == (5, 3, 3, 1)
    assert body["daily"][0]["open"] == 5
    assert body["top_links"][0] == {
        "link_id": link.pk,
        "url": "https://example.com/a",
        "clicks": 2,
        "human_clicks": 1,
        "unique_clickers": 1,
    }
    assert body["top_links"][1]["link_id"] == other.pk
    assert "instantly" not in body and "instantly_error" not in body


def test_instantly_figures_are_merged_for_that_channel(org):
    campaign = CampaignFactory(organization=org, channel="instantly", status="running", instantly_campaign_id="inst-7")
    assert "not been synced yet" in campaign_analytics(campaign=campaign)["instantly_error"]

    sync_instantly_analytics()
    result = campaign_analytics(campaign=campaign)
    assert result["instantly"] == InstantlySandbox().campaign_analytics(campaign_id="inst-7")
    assert result["instantly"]["campaign_id"] == "inst-7"
    assert result["instantly_synced_at"] is not None and "instantly_error" not in result


def test_an_instantly_failure_becomes_a_field_not_a_500(alice_client, org, monkeypatch):
    campaign = CampaignFactory(organization=org, channel="instantly", status="running", instantly_campaign_id="inst-7")

    def down(self, **kwargs):
        raise ServerError("instantly", "503 from upstream", 503)

    monkeypatch.setattr(InstantlySandbox, "campaign_analytics", down)
    assert sync_instantly_analytics() == {"synced": 0, "errors": 1}
    monkeypatch.setattr(InstantlySandbox, "campaign_analytics", lambda *a, **k: pytest.fail("called from a GET"))
    response = alice_client.get(f"/api/v1/campaigns/{campaign.pk}/analytics")

    assert response.status_code == 200
    assert "503 from upstream" in response.json()["instantly_error"]
    assert "instantly" not in response.json()


# --- Recording events through the API ----------------------------------------------------------


def test_an_integrator_records_opens_clicks_and_bounces(alice_client, campaign, sent):
    recipient = sent[0]
    link = Link.objects.create(campaign=campaign, url="https://example.com/a")
    base = f"/api/v1/campaigns/tracking/{recipient.pk}"

    assert alice_client.post(f"{base}/open", {}, format="json").status_code == 201
    click = alice_client.post(f"{base}/click", {"link_id": link.pk, "user_agent": "X"}, format="json")
    assert click.status_code == 201 and click.json()["url"] == "https://example.com/a"
    assert alice_client.post(f"{base}/bounce", {}, format="json").status_code == 201

    events = alice_client.get(f"{base}/events").json()["results"]
    assert [e["type"] for e in events][::-1] == ["open", "click", "bounce"]
    assert {e["source"] for e in events} == {"api"}
    recipient.refresh_from_db()
    assert recipient.status == "bounced"


def test_a_click_on_another_campaigns_link_is_a_400(alice_client, sent, other_campaign):
    foreign = Link.objects.create(campaign=other_campaign, url="https://evil.example")
    response = alice_client.post(
        f"/api/v1/campaigns/tracking/{sent[0].pk}/click", {"link_id": foreign.pk}, format="json"
    )
    assert response.status_code == 400 and "link_id" in response.json()


def test_recipient_events_are_scoped_to_the_organization(charlie_client, alice_client, viewer, sent):
    base = f"/api/v1/campaigns/tracking/{sent[0].pk}"
    assert charlie_client.get(f"{base}/events").status_code == 404
    assert charlie_client.post(f"{base}/open", {}, format="json").status_code == 404
    assert alice_client.get("/api/v1/campaigns/tracking/999999/events").status_code == 404
    assert alice_client.get("/api/v1/campaigns/tracking/abc/events").status_code == 404
    viewer_client = APIClient()
    viewer_client.force_authenticate(viewer)
    assert viewer_client.get(f"{base}/events").status_code == 200
    assert viewer_client.post(f"{base}/open", {}, format="json").status_code == 403


def test_the_public_urls_statement_counts_like_the_general_path(campaign, org):
    other = CampaignFactory(organization=org)
    fast = Recipient.objects.create(campaign=campaign, email="a@example.org", status="sent")
    general = Recipient.objects.create(campaign=other, email="a@example.org", status="sent")
    fast_link = Link.objects.create(campaign=campaign, url="https://example.com/a")
    general_link = Link.objects.create(campaign=other, url="https://example.com/a")
    for kind, machine in [("open", True), ("open", False), ("open", False), ("click", True), ("click", False)]:
        is_click = kind == "click"
        assert event_record_seen(
            type=kind, token=fast.token, is_machine=machine, link_id=fast_link.pk if is_click else None
        )
        event_record(
            type=kind, recipient_id=general.pk, is_machine=machine, link_id=general_link.pk if is_click else None
        )

    assert counters_read(campaign_id=campaign.pk) == counters_read(campaign_id=other.pk)
    assert counters_read(campaign_id=campaign.pk) == counters_derive(campaign_id=campaign.pk)
    fast.refresh_from_db()
    assert fast.first_opened_at < fast.first_human_opened_at and fast.first_clicked_at < fast.first_human_clicked_at
    assert not event_record_seen(type="open", token="no-such-token-at-all")
