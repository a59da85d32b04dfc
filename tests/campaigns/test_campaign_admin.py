from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from campaigns.models import CampaignEvent
from tests.factories import CampaignFactory


def act(client, campaign, name):
    return client.post(reverse("admin:campaigns_campaign_act", args=[campaign.pk, name]))


def test_the_campaign_list_shows_status_phase_and_progress(admin_client_logged_in, org):
    CampaignFactory(organization=org, name="Visible", status="running", phase="enrichment", progress=40)
    response = admin_client_logged_in.get(reverse("admin:campaigns_campaign_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Visible" in html and "enrichment" in html and "40%" in html


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
