"""A newcomer's first hour in the admin, in a real browser: create a campaign, start, pause,
resume and cancel it with the buttons the state table allows, break a template and be told so,
and see the banner while the queue is paused. Each page is saved as a screenshot."""

import pytest

from campaigns.models import Campaign
from integrations.models import SandboxSetting
from tests.factories import CampaignFactory

from .conftest import admin_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def no_celery(monkeypatch):
    """The live server runs in this process: record wake-ups instead of sending them to a broker."""
    woken = []
    monkeypatch.setattr("campaigns.dispatch._send", lambda task, args, **kwargs: woken.append((task, args)))
    return woken


def press(page, selector: str) -> None:
    """Click what submits a form, and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def buttons(page) -> list[str]:
    return [
        name.removeprefix("campaign-")
        for name in page.locator("#campaign-actions button").evaluate_all("buttons => buttons.map(b => b.name)")
    ]


def test_an_operator_creates_starts_pauses_resumes_and_cancels_a_campaign(
    live_server, page, staff, org, no_celery, screenshot
):
    admin_login(page, live_server)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/add/")
    page.select_option("#id_organization", str(org.pk))
    page.fill("#id_name", "Spring outreach")
    page.fill("#id_search_url", "https://app.apollo.io/#/people?personTitles[]=cto")
    page.fill("#id_lead_count", "20")
    page.fill("#id_from_email", "alice@acme.example")
    page.fill("#id_subject_template", "Hi {{ first_name }}")
    page.fill("#id_body_template", "Hello {{ first_name }}, how is {{ company }}?")
    screenshot(page, "add-form")
    press(page, "input[name=_continue]")

    assert "was added successfully" in page.locator(".messagelist").inner_text()
    campaign = Campaign.objects.get(name="Spring outreach")
    assert campaign.status == "draft"
    assert buttons(page) == ["start", "schedule", "cancel"]
    screenshot(page, "draft")

    press(page, "button[name=campaign-start]")
    assert "Campaign start done." in page.locator(".messagelist").inner_text()
    assert buttons(page) == ["pause", "cancel"]
    assert page.locator("input[name=_save]").count() == 0  # running: read-only, no Save buttons
    screenshot(page, "running")

    press(page, "button[name=campaign-pause]")
    assert buttons(page) == ["resume", "cancel"]
    screenshot(page, "paused")
    press(page, "button[name=campaign-resume]")
    assert buttons(page) == ["pause", "cancel"]
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase) == ("running", "lead_sourcing")

    press(page, "button[name=campaign-cancel]")
    assert "Cancel this campaign?" in page.locator("#confirm-question").inner_text()
    screenshot(page, "cancel-confirmation")
    press(page, "#confirm-no")
    campaign.refresh_from_db()
    assert campaign.status == "running"  # going back changed nothing

    press(page, "button[name=campaign-cancel]")
    page.fill("#id_reason", "wrong list")
    press(page, "#confirm-yes")
    assert "Campaign cancel done." in page.locator(".messagelist").inner_text()
    assert buttons(page) == []
    assert page.locator("input[name=_save]").count() == 0
    screenshot(page, "cancelled")
    campaign.refresh_from_db()
    assert campaign.status == "cancelled"
    assert campaign.events.get(action="campaign.cancelled").reason == "wrong list"


def test_a_broken_template_is_shown_on_its_field_and_nothing_is_saved(live_server, page, staff, org, screenshot):
    admin_login(page, live_server)
    page.goto(f"{live_server.url}/admin/campaigns/campaign/add/")
    page.select_option("#id_organization", str(org.pk))
    page.fill("#id_name", "Broken copy")
    page.fill("#id_subject_template", "Hi")
    page.fill("#id_body_template", "Hello,\n{% if %}you{% endif %}")
    press(page, "input[name=_save]")

    error = page.locator(".field-body_template .errorlist").inner_text()
    assert error == "Line 2: Unexpected end of expression in if tag."
    screenshot(page, "template-error")
    assert not Campaign.objects.filter(name="Broken copy").exists()


def test_while_the_queue_is_paused_every_page_says_so_and_start_is_disabled_with_why(
    live_server, page, staff, org, screenshot
):
    CampaignFactory(organization=org, name="Waiting draft")
    system_paused = CampaignFactory(organization=org, name="Caught by the queue", status="paused", pause_kind="queue")
    SandboxSetting.objects.update_or_create(service="apollo", defaults={"fail": True})
    admin_login(page, live_server)

    page.click("#queue-control-link >> text=Queue control")
    page.fill("#pause-reason", "provider maintenance")
    press(page, "#queue-pause")
    assert "Pause the queue?" in page.locator("#confirm-question").inner_text()
    screenshot(page, "pause-confirmation")
    press(page, "#confirm-yes")
    assert "Queue paused" in page.locator(".messagelist").inner_text()

    page.goto(f"{live_server.url}/admin/campaigns/campaign/")
    banner = page.locator("#operations-banner")
    assert "The queue is paused (provider maintenance)" in banner.inner_text()
    assert "Failure injection is on" in page.locator("#sandbox-warning").inner_text()
    screenshot(page, "banner")

    page.click("text=Waiting draft")
    assert page.locator("button[name=campaign-start]").is_disabled()
    assert page.locator("#refusal-start").inner_text() == "Cannot start: the queue is paused; resume the queue first."
    assert page.locator("button[name=campaign-cancel]").is_enabled()
    screenshot(page, "start-disabled")

    page.goto(f"{live_server.url}/admin/campaigns/campaign/{system_paused.pk}/change/")
    assert page.locator("button[name=campaign-resume]").is_disabled()
    assert "paused by queue; it resumes with the queue" in page.locator("#refusal-resume").inner_text()
    screenshot(page, "resume-disabled")

    press(page, "#operations-banner-link")
    assert page.locator("#queue-state-value").inner_text() == "paused"
