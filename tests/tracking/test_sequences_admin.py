"""The sequence in the admin: steps added through the services (validated, in the history), the
sequence panel on the campaign page with per-variant figures, and a recipient's timeline."""

import pytest
from django.utils import timezone

from campaigns.models import CampaignEvent
from tests.factories import CampaignFactory
from tracking.models import Recipient, SequenceStep, StepSend, StepVariant
from tracking.services import event_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(org):
    return CampaignFactory(organization=org, name="Draft outreach", status="draft")


def test_a_step_added_in_the_admin_is_numbered_and_recorded(admin_client_logged_in, draft):
    campaign = draft
    response = admin_client_logged_in.post(
        "/admin/tracking/sequencestep/add/",
        {"campaign": campaign.pk, "delay_days": 2, "same_thread": "on", "body_template": "Nudge {{ first_name }}"},
    )
    assert response.status_code == 302, response.content[:2000]
    assert list(SequenceStep.objects.values_list("number", "delay_days")) == [(2, 2)]
    assert CampaignEvent.objects.filter(campaign=campaign, action="sequence.step_added").exists()


def test_a_broken_template_is_refused_in_the_admin_with_its_field(admin_client_logged_in, draft):
    campaign = draft
    response = admin_client_logged_in.post(
        "/admin/tracking/sequencestep/add/",
        {"campaign": campaign.pk, "delay_days": 2, "same_thread": "on", "body_template": "Hi {% load x %}"},
    )
    assert response.status_code == 200 and b"errorlist" in response.content
    assert not SequenceStep.objects.exists()


def test_a_running_campaigns_steps_are_refused_in_the_admin_with_the_reason(admin_client_logged_in, campaign):
    response = admin_client_logged_in.post(
        "/admin/tracking/sequencestep/add/",
        {"campaign": campaign.pk, "delay_days": 2, "same_thread": "on", "body_template": "Nudge"},
    )
    assert response.status_code == 200 and b"Cannot edit the sequence of a running campaign" in response.content
    assert not SequenceStep.objects.exists()
    step = SequenceStep.objects.create(campaign=campaign, number=2, body_template="x")
    assert (
        admin_client_logged_in.post(f"/admin/tracking/sequencestep/{step.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert SequenceStep.objects.filter(pk=step.pk).exists()


def test_the_campaign_page_shows_the_sequence_and_the_variants(admin_client_logged_in, campaign):
    SequenceStep.objects.create(campaign=campaign, number=2, delay_days=3, body_template="Again")
    StepVariant.objects.create(campaign=campaign, step=1, label="A", body_template="a")
    StepVariant.objects.create(campaign=campaign, step=1, label="B", body_template="b")
    now = timezone.now()
    for i, label in enumerate("AABB"):
        recipient = Recipient.objects.create(campaign=campaign, email=f"v{i}@example.org", status="sent")
        StepSend.objects.create(recipient=recipient, campaign=campaign, step=1, variant=label, sent_at=now)
    response = admin_client_logged_in.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Sequence" in html and "3 day(s)" in html and "(Re: previous)" in html
    assert "A/B variants (compared on open)" in html
    steps_link = f"/admin/tracking/sequencestep/?campaign={campaign.pk}"
    assert steps_link in html
    listed = admin_client_logged_in.get(steps_link)
    assert listed.status_code == 200 and b"Spring outreach" in listed.content and b"1 sequence step" in listed.content


def test_the_recipient_page_shows_its_timeline(admin_client_logged_in, campaign):
    recipient = Recipient.objects.create(campaign=campaign, email="tl@example.org", status="sent")
    StepSend.objects.create(recipient=recipient, campaign=campaign, step=1, sent_at=timezone.now())
    event_record(type="reply", recipient_id=recipient.pk, source="api")
    response = admin_client_logged_in.get(f"/admin/tracking/recipient/{recipient.pk}/change/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<td>sent</td>" in html and "<td>reply</td>" in html and "<td>stopped</td>" in html
    assert "replied" in html
