"""The admin's list pages show their key columns without horizontal scrolling in a 1400 px
window, even with long errors, addresses and user agents."""

import pytest
from django.utils import timezone

from tests.factories import CampaignFactory, JobFactory, LeadFactory
from tracking.models import EmailEvent, Recipient

from .conftest import admin_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_ERROR = "ServerError: apollo answered 502 Bad Gateway " + "while fetching page 3 of the search; " * 12
LONG_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " * 3


@pytest.fixture
def long_rows(org):
    campaign = CampaignFactory(organization=org, name="Spring outreach to German CTOs and VPs of Engineering")
    lead = LeadFactory(
        campaign=campaign,
        email="a.very.long.address.of.a.lead@subdomain.example-company-with-a-long-name.org",
        first_name="Maximiliane",
        last_name="Oberhausen-Wittgenstein",
        title="Vice President of Engineering and Operations",
        company="Example Company With A Very Long Name GmbH & Co. KG",
        company_domain="example-company-with-a-long-name.org",
        email_status="valid",
    )
    for status in ("failed", "completed", "pending"):
        JobFactory(
            campaign=campaign,
            range_start=lead.pk,
            range_end=lead.pk,
            size=1,
            status=status,
            job_type="verify_email",
            last_error=LONG_ERROR,
        ) if (status == "failed") else JobFactory(campaign=campaign, status=status, job_type="enrich_lead")
    recipient = Recipient.objects.create(
        campaign=campaign,
        lead=lead,
        email=lead.email,
        status="sent",
        sent_at=timezone.now(),
        first_human_opened_at=timezone.now(),
        last_error=LONG_ERROR,
    )
    EmailEvent.objects.create(
        campaign=campaign, recipient=recipient, type="open", occurred_at=timezone.now(), user_agent=LONG_AGENT
    )
    return campaign


LISTS = {
    "jobs": ("/admin/campaigns/job/", ["last error", "campaign"]),
    "recipients": ("/admin/tracking/recipient/", ["sent at", "first human open", "last error", "campaign"]),
    "events": ("/admin/tracking/emailevent/", ["campaign", "user agent"]),
    "leads": ("/admin/campaigns/lead/", ["campaign", "email status"]),
}


@pytest.mark.parametrize("name", list(LISTS))
def test_a_list_page_fits_a_1400_px_window(live_server, page, staff, long_rows, screenshot, name):
    url, columns = LISTS[name]
    admin_login(page, live_server)
    page.goto(f"{live_server.url}{url}")
    screenshot(page, name)

    headers = [h.strip().lower() for h in page.locator("#result_list thead th").all_inner_texts()]
    for column in columns:
        assert column in headers, headers
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name}: {overflow} px of horizontal scrolling"
    # Every column header is inside the window, not cut off behind a scrolled container.
    right = page.evaluate(
        "Math.max(...[...document.querySelectorAll('#result_list th, #result_list td')]"
        ".map(cell => cell.getBoundingClientRect().right))"
    )
    assert right <= 1400, f"{name}: the table reaches {right:.0f} px"
