from datetime import timedelta

import pytest
from django.utils import timezone

from tracking.admin_panels import campaign_stats_panel
from tracking.models import EmailEvent, Recipient, Suppression
from tracking.services import event_record, recipients_transition

pytestmark = pytest.mark.django_db

RECIPIENTS = "/admin/tracking/recipient/"


@pytest.fixture
def stuck_and_fresh(campaign):
    long_ago = timezone.now() - timedelta(hours=1)
    stuck = Recipient.objects.create(
        campaign=campaign, email="stuck@example.org", status="sending", claimed_at=long_ago
    )
    fresh = Recipient.objects.create(
        campaign=campaign, email="fresh@example.org", status="sending", claimed_at=timezone.now()
    )
    return stuck, fresh


def test_the_stuck_filter_shows_only_recipients_long_in_sending(admin_client_logged_in, stuck_and_fresh):
    response = admin_client_logged_in.get(RECIPIENTS, {"stuck": "yes"})

    assert response.status_code == 200
    assert b"stuck@example.org" in response.content and b"fresh@example.org" not in response.content


def test_an_operator_releases_stuck_recipients_to_pending(admin_client_logged_in, stuck_and_fresh):
    stuck, fresh = stuck_and_fresh
    sent = Recipient.objects.create(campaign=stuck.campaign, email="sent@example.org", status="sent")

    response = admin_client_logged_in.post(
        RECIPIENTS, {"action": "release_to_pending", "_selected_action": [stuck.pk, sent.pk]}, follow=True
    )

    assert b"1 recipient(s) put back to pending" in response.content
    assert b"1 skipped" in response.content
    assert Recipient.objects.get(pk=stuck.pk).status == "pending"
    assert Recipient.objects.get(pk=sent.pk).status == "sent"
    assert stuck.campaign.events.filter(action="tracking.recipients.released").exists()


def test_an_operator_marks_stuck_recipients_failed(admin_client_logged_in, stuck_and_fresh):
    stuck, _ = stuck_and_fresh
    admin_client_logged_in.post(RECIPIENTS, {"action": "mark_failed", "_selected_action": [stuck.pk]})
    stuck.refresh_from_db()
    assert stuck.status == "failed" and "admin" in stuck.last_error


def test_the_recipient_list_costs_a_constant_number_of_queries(
    admin_client_logged_in, campaign, django_assert_max_num_queries
):
    Recipient.objects.bulk_create([Recipient(campaign=campaign, email=f"r{i}@example.org") for i in range(30)])
    # 30 rows; besides the list itself, the operations banner reads the latch, the sandbox
    # switches and (here, with Redis emptied before each test) each breaker's last event.
    with django_assert_max_num_queries(20):
        assert admin_client_logged_in.get(RECIPIENTS).status_code == 200


def test_events_are_read_only_in_the_admin(admin_client_logged_in, campaign):
    recipient = Recipient.objects.create(campaign=campaign, email="r@example.org", status="sent")
    event = event_record(type="open", recipient_id=recipient.pk)
    assert admin_client_logged_in.get("/admin/tracking/emailevent/").status_code == 200
    assert admin_client_logged_in.get("/admin/tracking/emailevent/add/").status_code == 403
    admin_client_logged_in.post(f"/admin/tracking/emailevent/{event.pk}/delete/", {"post": "yes"})
    assert EmailEvent.objects.filter(pk=event.pk).exists()


def test_a_suppression_added_in_the_admin_is_stored_lower_cased(admin_client_logged_in, org):
    response = admin_client_logged_in.post(
        "/admin/tracking/suppression/add/", {"organization": org.pk, "email": "Ops@Example.org", "reason": "manual"}
    )
    assert response.status_code == 302
    assert Suppression.objects.get().email == "ops@example.org"


def test_the_stats_panel_shows_the_figures_and_the_stuck_count(campaign, stuck_and_fresh):
    recipients_transition(campaign_id=campaign.pk, to_status="sent", ids=[stuck_and_fresh[1].pk])

    html = campaign_stats_panel(campaign)

    assert "<h2>Tracking stats</h2>" in html
    assert '<th scope="col">Metric</th><th scope="col">Human</th>' in html
    assert '<th scope="row">Sent</th><td colspan="2">1</td>' in html
    assert '<td title="of sent">100.0 %</td>' in html  # delivered of sent, as a percentage
    assert '<td title="of delivered">0.0 %</td>' in html
    assert "1 recipient stuck in <em>sending</em>" in html


def test_the_campaign_page_shows_the_stats_panel(admin_client_logged_in, org):
    from django.urls import reverse

    from tests.factories import CampaignFactory

    campaign = CampaignFactory(organization=org, status="running")
    html = admin_client_logged_in.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "Jobs (0)" in html
    assert "Unique opens" in html and "tracking-stats" in html


def test_a_suppression_added_in_the_admin_goes_through_the_service_and_is_logged(admin_client_logged_in, org):
    from django.contrib.admin.models import LogEntry

    from tracking.services import suppression_add

    suppression_add(organization_id=org.pk, email="ops@example.org", reason="unsubscribe")
    response = admin_client_logged_in.post(
        "/admin/tracking/suppression/add/", {"organization": org.pk, "email": "OPS@example.org", "reason": "manual"}
    )
    assert response.status_code == 302
    stored = Suppression.objects.get()
    assert (stored.email, stored.reason) == ("ops@example.org", "unsubscribe")  # the first reason stays
    assert LogEntry.objects.filter(object_id=str(stored.pk)).exists()
