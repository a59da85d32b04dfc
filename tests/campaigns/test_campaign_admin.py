import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignEvent, CampaignPhase
from campaigns.states import CAMPAIGN_ACTIONS
from queue_control.services import queue_pause
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


def change_page(client, campaign) -> str:
    return client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content.decode()


def test_the_change_page_shows_the_history_to_the_second(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, status="running")
    event = CampaignEvent.objects.create(
        campaign=campaign, action="campaign.running", from_status="draft", to_status="running"
    )
    html = change_page(admin_client_logged_in, campaign)
    assert "History" in html and "campaign.running" in html
    assert event.created_at.strftime("%Y-%m-%d %H:%M:%S") in html


@pytest.mark.parametrize(
    ("status", "buttons"),
    [
        ("draft", ["start", "schedule", "cancel"]),
        ("scheduled", ["start", "unschedule", "cancel"]),
        ("running", ["pause", "cancel"]),
        ("paused", ["resume", "cancel"]),
        ("completed", []),
        ("cancelled", []),
    ],
)
def test_the_page_shows_only_the_buttons_whose_action_is_allowed_now(admin_client_logged_in, org, status, buttons):
    campaign = CampaignFactory(organization=org, status=status, pause_kind="manual" if status == "paused" else "")
    html = change_page(admin_client_logged_in, campaign)
    shown = [name for name in CAMPAIGN_ACTIONS if f'name="campaign-{name}"' in html]
    assert shown == buttons
    assert "disabled" not in "".join(html.split('id="campaign-actions"')[1:2]).split("</div>")[0]


def test_a_button_the_queue_would_refuse_is_disabled_with_the_reason(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org)
    queue_pause(reason="maintenance")
    html = change_page(admin_client_logged_in, campaign)
    assert 'name="campaign-start" disabled' in html
    assert "Cannot start: the queue is paused; resume the queue first." in html
    assert 'name="campaign-cancel">' in html  # cancelling needs no queue


def test_resume_of_a_campaign_paused_by_a_breaker_is_disabled_with_the_reason(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, status="paused", pause_kind="breaker", pause_service="apollo")
    html = change_page(admin_client_logged_in, campaign)
    assert 'name="campaign-resume" disabled' in html
    assert "campaign was paused by breaker:apollo; it resumes with the queue" in html


def test_start_is_disabled_naming_what_the_campaign_lacks(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, from_email="", search_url="")
    html = change_page(admin_client_logged_in, campaign)
    assert 'name="campaign-start" disabled' in html
    assert "missing a lead source (a search URL or an uploaded CSV); a sender address (from_email)" in html


def test_a_read_only_campaign_shows_no_save_buttons(admin_client_logged_in, org):
    running = CampaignFactory(organization=org, status="running")
    draft = CampaignFactory(organization=org)
    assert 'name="_save"' not in change_page(admin_client_logged_in, running)
    assert 'name="_continue"' not in change_page(admin_client_logged_in, running)
    assert 'name="_save"' in change_page(admin_client_logged_in, draft)


def test_the_pause_button_pauses_through_the_service(admin_client_logged_in, org, staff):
    campaign = CampaignFactory(organization=org, status="running")
    response = act(admin_client_logged_in, campaign, "pause")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_cause) == ("paused", "manual")
    assert campaign.events.get(action="campaign.paused").actor == staff


def test_cancel_asks_for_confirmation_first(admin_client_logged_in, org, staff):
    campaign = CampaignFactory(organization=org, status="running")
    response = act(admin_client_logged_in, campaign, "cancel")
    assert response.status_code == 200
    assert "Cancel this campaign?" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == "running"

    url = reverse("admin:campaigns_campaign_act", args=[campaign.pk, "cancel"])
    response = admin_client_logged_in.post(url, {"confirmed": "yes", "reason": "wrong list"})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "cancelled"
    assert campaign.events.get(action="campaign.cancelled").reason == "wrong list"


def test_the_schedule_button_takes_a_launch_time(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org)
    url = reverse("admin:campaigns_campaign_act", args=[campaign.pk, "schedule"])
    response = admin_client_logged_in.post(url, {"scheduled_at": "2999-01-02T03:04"})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "scheduled"
    assert campaign.scheduled_at.isoformat() == "2999-01-02T03:04:00+00:00"
    past = admin_client_logged_in.post(
        reverse("admin:campaigns_campaign_act", args=[CampaignFactory(organization=org).pk, "schedule"]),
        {"scheduled_at": "2000-01-01T00:00"},
    )
    assert any("Must be in the future" in str(m) for m in get_messages(past.wsgi_request))


def test_a_refused_button_explains_why(admin_client_logged_in, org):
    campaign = CampaignFactory(organization=org, status="draft")
    response = act(admin_client_logged_in, campaign, "resume")
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("Resume refused: Cannot resume a draft campaign" in m for m in messages), messages
    campaign.refresh_from_db()
    assert campaign.status == "draft"


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


def add_form_data(org, **overrides):
    return {
        "organization": org.pk,
        "name": "Spring outreach",
        "description": "",
        "search_url": "https://app.apollo.io/#/people?personTitles[]=cto",
        "lead_count": 20,
        "channel": "smtp",
        "from_name": "Alice",
        "from_email": "alice@example.com",
        "reply_to": "",
        "subject_template": "Hi {{ first_name }}",
        "body_template": "Hello {{ first_name }}",
        "send_rate_per_minute": 60,
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
        **overrides,
    }


def test_the_add_form_creates_a_campaign_through_the_service(admin_client_logged_in, org, staff):
    response = admin_client_logged_in.post(reverse("admin:campaigns_campaign_add"), add_form_data(org))
    assert response.status_code == 302, response.content.decode()[:3000]
    campaign = Campaign.objects.get(name="Spring outreach")
    assert (campaign.organization, campaign.status, campaign.lead_count) == (org, "draft", 20)
    assert campaign.events.get(action="campaign.created").actor == staff


def test_the_add_form_works_with_only_the_required_fields(admin_client_logged_in, org):
    data = add_form_data(org, search_url="", from_name="", from_email="", subject_template="", body_template="")
    response = admin_client_logged_in.post(reverse("admin:campaigns_campaign_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Campaign.objects.filter(name="Spring outreach", status="draft").exists()


def test_the_add_form_has_no_state_fields(admin_client_logged_in):
    html = admin_client_logged_in.get(reverse("admin:campaigns_campaign_add")).content.decode()
    assert "Timestamps" not in html and "status_error" not in html
