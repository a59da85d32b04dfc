from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import CampaignEvent, CampaignPhase
from tests.factories import CampaignFactory


def act(client, campaign, name):
    return client.post(reverse("admin:campaigns_campaign_act", args=[campaign.pk, name]))


def test_the_campaign_list_shows_status_phase_and_progress(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, name="Visible", status="running", phase="enrichment")
    now = timezone.now()
    for phase, done in (("lead_sourcing", 10), ("verification", 10), ("enrichment", 4)):
        CampaignPhase.objects.create(
            campaign=campaign,
            phase=phase,
            items_total=10,
            items_done=done,
            started_at=now,
            updated_at=now,
            finished_at=now if done == 10 else None,
        )
    response = admin_client_logged_in.get(reverse("admin:campaigns_campaign_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Visible" in html and "60% overall (enrichment: 40%)" in html


def test_the_campaign_list_filters_and_searches(admin_client_logged_in, org):
    CampaignFactory(organization=org, name="Needle", status="paused")
    CampaignFactory(organization=org, name="Haystack", status="draft")
    url = reverse("admin:campaigns_campaign_changelist")
    assert "Needle" not in admin_client_logged_in.get(url, {"status__exact": "draft"}).content.decode()
    found = admin_client_logged_in.get(url, {"q": "Need"}).content.decode()
    assert "Needle" in found and "Haystack" not in found


def test_names_are_escaped_in_the_admin(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, name="<script>alert(1)</script>")
    for url in (
        reverse("admin:campaigns_campaign_changelist"),
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
    ):
        html = admin_client_logged_in.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_change_page_shows_the_history_and_the_allowed_buttons(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, status="running")
    CampaignEvent.objects.create(campaign=campaign, action="campaign.running", from_status="draft", to_status="running")
    html = admin_client_logged_in.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()
    assert "History" in html and "campaign.running" in html
    assert 'name="campaign-pause" ' in html  # enabled
    assert 'name="campaign-start" disabled' in html


def test_the_pause_button_pauses_through_the_service(admin_client_logged_in, org, staff):
    campaign = CampaignFactory(organization=org, status="running")
    response = act(admin_client_logged_in, campaign, "pause")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_reason) == ("paused", "manual")
    assert campaign.events.get(action="campaign.paused").actor == staff


def test_a_refused_button_explains_why(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, status="completed")
    response = act(admin_client_logged_in, campaign, "cancel")
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("Cancel refused: Cannot move campaign from completed to cancelled" in m for m in messages)
    campaign.refresh_from_db()
    assert campaign.status == "completed"


def test_buttons_need_post_and_staff(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, status="running")
    url = reverse("admin:campaigns_campaign_act", args=[campaign.pk, "pause"])
    assert admin_client_logged_in.get(url).status_code == 405
    assert Client().post(url).status_code == 302  # anonymous: sent to the login page
    campaign.refresh_from_db()
    assert campaign.status == "running"


def change_form_data(campaign, **overrides):
    data = {
        "organization": campaign.organization_id,
        "name": campaign.name,
        "description": "",
        "search_url": campaign.search_url,
        "lead_count": campaign.lead_count,
        "channel": campaign.channel,
        "from_name": campaign.from_name,
        "from_email": campaign.from_email,
        "reply_to": "",
        "subject_template": campaign.subject_template,
        "body_template": campaign.body_template,
        "send_rate_per_minute": campaign.send_rate_per_minute,
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
        **overrides,
    }
    return data


def test_saving_a_draft_in_the_admin_goes_through_the_service(admin_client_logged_in, org, staff):
    campaign = CampaignFactory(organization=org, name="Before")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    response = admin_client_logged_in.post(url, change_form_data(campaign, name="After"))
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign.refresh_from_db()
    assert campaign.name == "After"
    assert campaign.events.get(action="campaign.updated").actor == staff


def test_a_running_campaign_is_read_only_in_the_admin(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, name="Frozen", status="running")
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    assert 'name="name"' not in admin_client_logged_in.get(url).content.decode()
    admin_client_logged_in.post(url, change_form_data(campaign, name="Changed"))
    campaign.refresh_from_db()
    assert campaign.name == "Frozen"


def test_deleting_in_the_admin_is_soft_and_refused_while_running(admin_client_logged_in, org):
    running = CampaignFactory(organization=org, status="running")
    done = CampaignFactory(organization=org, status="completed")
    delete = lambda c: admin_client_logged_in.post(  # noqa: E731
        reverse("admin:campaigns_campaign_delete", args=[c.pk]), {"post": "yes"}
    )
    assert delete(running).status_code == 403
    assert delete(done).status_code == 302
    done.refresh_from_db()
    running.refresh_from_db()
    assert done.deleted_at is not None and running.deleted_at is None
