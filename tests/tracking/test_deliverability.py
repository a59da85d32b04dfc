"""The deliverability guard: bounce and complaint rates per campaign and per mailbox pause with
cause `deliverability` naming the figure, stick until an operator resumes, refuse a resume while
still above unless acknowledged (recorded), and suppress the addresses at once."""

import pytest
from django.utils import timezone

from campaigns.mailboxes import mailbox_create, mailbox_resume
from campaigns.models import Campaign, Mailbox
from campaigns.services import campaign_resume
from campaigns_project.errors import ApplicationError
from queue_control.models import QueueEvent
from queue_control.services import queue_pause, queue_resume
from tests.factories import CampaignFactory, LeadFactory
from tests.tracking.test_sending import launch, run
from tracking.models import DeliverabilityBaseline, Recipient, Suppression
from tracking.services import event_record

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture(autouse=True)
def _every_event_checks(settings, django_capture_on_commit_callbacks):
    settings.DELIVERABILITY_CHECK_SECONDS = 0  # no throttle: each bounce is judged at once
    settings.DELIVERABILITY_MIN_SENDS = 100
    settings.DELIVERABILITY_BOUNCE_RATE = 0.05
    settings.DELIVERABILITY_COMPLAINT_RATE = 0.003


def sent_recipients(campaign: Campaign, count: int, *, mailbox: Mailbox | None = None, prefix: str = "r") -> list:
    now = timezone.now()
    return Recipient.objects.bulk_create(
        Recipient(
            campaign=campaign,
            email=f"{prefix}{i}@example.org",
            status="sent",
            sent_at=now,
            message_id=f"<{prefix}{i}@acme.example>",
            mailbox=mailbox,
        )
        for i in range(count)
    )


def bounce(recipients, django_capture_on_commit_callbacks, *, type="bounce") -> None:
    for recipient in recipients:
        with django_capture_on_commit_callbacks(execute=True):
            event_record(type=type, recipient_id=recipient.pk, source="generic")


def test_a_bounce_rate_above_the_threshold_pauses_the_campaign_naming_the_figure(
    campaign, django_capture_on_commit_callbacks
):
    recipients = sent_recipients(campaign, 100)
    bounce(recipients[:5], django_capture_on_commit_callbacks)  # 5 %: not above
    campaign.refresh_from_db()
    assert campaign.status == "running"

    bounce(recipients[5:6], django_capture_on_commit_callbacks)  # 6 %
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_kind) == ("paused", "deliverability")
    assert campaign.pause_figure == "bounce rate 6.0% > 5.0% (6 of 100 sends)"
    assert campaign.pause_cause == "deliverability:bounce rate 6.0% > 5.0% (6 of 100 sends)"
    event = campaign.events.get(action="campaign.paused")
    assert event.actor_label == "deliverability guard" and "bounce rate 6.0%" in event.reason


def test_bounced_and_complained_addresses_are_suppressed_at_once(campaign, django_capture_on_commit_callbacks):
    first, second = sent_recipients(campaign, 2)
    bounce([first], django_capture_on_commit_callbacks)
    bounce([second], django_capture_on_commit_callbacks, type="complain")
    assert dict(Suppression.objects.values_list("email", "reason")) == {
        first.email: "bounced",
        second.email: "complained",
    }


def test_below_the_minimum_of_sends_no_figure_pauses(campaign, django_capture_on_commit_callbacks):
    recipients = sent_recipients(campaign, 99)
    bounce(recipients[:30], django_capture_on_commit_callbacks)
    campaign.refresh_from_db()
    assert campaign.status == "running"


@pytest.mark.parametrize(("complaints", "paused"), [(3, False), (4, True)])
def test_a_complaint_rate_above_0_3_percent_pauses_the_campaign(
    campaign, django_capture_on_commit_callbacks, complaints, paused
):
    recipients = sent_recipients(campaign, 1000)
    bounce(recipients[:complaints], django_capture_on_commit_callbacks, type="complain")
    campaign.refresh_from_db()
    assert (campaign.status == "paused") is paused
    if paused:
        assert campaign.pause_figure == "complaint rate 0.40% > 0.30% (4 of 1000 sends)"


def test_the_pause_is_sticky_and_a_resume_needs_an_acknowledgement_while_still_above(
    campaign, alice, django_capture_on_commit_callbacks
):
    recipients = sent_recipients(campaign, 100)
    bounce(recipients[:6], django_capture_on_commit_callbacks)

    queue_pause(reason="maintenance", actor=alice)
    queue_resume(actor=alice)  # the queue's resume does not wake it
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_kind) == ("paused", "deliverability")

    with pytest.raises(ApplicationError, match="still above the threshold") as refused:
        campaign_resume(campaign_id=campaign.pk, actor=alice)
    assert refused.value.extra["acknowledge_required"] is True
    assert not DeliverabilityBaseline.objects.exists()

    campaign_resume(campaign_id=campaign.pk, actor=alice, acknowledge=True)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_kind, campaign.pause_figure) == ("running", "", "")
    baseline = DeliverabilityBaseline.objects.get(campaign=campaign)
    assert (baseline.sends, baseline.bounces, baseline.actor) == (100, 6, alice)
    assert "acknowledged" in campaign.events.get(action="campaign.running").reason

    # Judged from the acknowledgement on: one more bounce does not trip it again at once.
    more = sent_recipients(campaign, 20, prefix="later")
    bounce(more[:1], django_capture_on_commit_callbacks)
    campaign.refresh_from_db()
    assert campaign.status == "running"


def test_a_figure_back_under_the_threshold_resumes_without_acknowledgement(
    campaign, alice, django_capture_on_commit_callbacks
):
    recipients = sent_recipients(campaign, 100)
    bounce(recipients[:6], django_capture_on_commit_callbacks)
    sent_recipients(campaign, 100, prefix="more")  # 6 of 200: 3 %
    campaign_resume(campaign_id=campaign.pk, actor=alice)
    campaign.refresh_from_db()
    assert campaign.status == "running"


def test_the_api_resume_takes_the_acknowledgement(campaign, bob_client, django_capture_on_commit_callbacks):
    recipients = sent_recipients(campaign, 100)
    bounce(recipients[:7], django_capture_on_commit_callbacks)
    url = f"/api/v1/campaigns/{campaign.pk}/resume/"

    refused = bob_client.post(url, {}, format="json")
    assert refused.status_code == 409 and "bounce rate 7.0%" in refused.json()["detail"]
    answer = bob_client.post(url, {"acknowledge": True}, format="json")
    assert answer.status_code == 200 and answer.json()["status"] == "running"
    assert bob_client.post(url, {"acknowledge": "maybe"}, format="json").status_code == 400


def test_a_burning_mailbox_pauses_itself_and_only_the_campaigns_that_use_it(
    campaign, org, alice, django_capture_on_commit_callbacks
):
    other = CampaignFactory(organization=org, status="running", phase="outreach", channel="smtp")
    bystander = CampaignFactory(organization=org, status="running", phase="outreach", channel="smtp")
    mailbox = mailbox_create(
        organization=org,
        name="anna",
        from_email="anna@acme.example",
        smtp_host="127.0.0.1",
        campaigns=[campaign, other],
    )
    # Over two campaigns the mailbox sent 100; the bounces are all in `campaign`'s 50 + the rest.
    mine = sent_recipients(campaign, 50, mailbox=mailbox, prefix="a")
    sent_recipients(other, 50, mailbox=mailbox, prefix="b")
    sent_recipients(bystander, 100, prefix="c")
    bounce(mine[:6], django_capture_on_commit_callbacks)

    mailbox.refresh_from_db()
    assert mailbox.pause_kind == "deliverability"
    assert mailbox.pause_figure == "bounce rate 6.0% > 5.0% (6 of 100 sends)"
    statuses = dict(Campaign.objects.values_list("pk", "status"))
    assert statuses[other.pk] == "paused" and statuses[bystander.pk] == "running"
    other.refresh_from_db()
    assert (other.pause_kind, other.pause_mailbox_id) == ("deliverability", mailbox.pk)
    assert QueueEvent.objects.filter(kind="mailbox.paused", service=f"mailbox.{mailbox.pk}").count() == 1

    with pytest.raises(ApplicationError, match="mailbox's bounce rate 6.0%"):
        mailbox_resume(mailbox_id=mailbox.pk, actor=alice)
    mailbox_resume(mailbox_id=mailbox.pk, actor=alice, acknowledge=True)
    other.refresh_from_db()
    assert other.status == "running"
    assert DeliverabilityBaseline.objects.get(mailbox=mailbox).bounces == 6
    resumed = QueueEvent.objects.get(kind="mailbox.resumed")
    assert resumed.details["acknowledged"] is True and resumed.actor == alice


def test_hard_bounces_at_send_time_pause_the_campaign_in_the_middle_of_its_batch(
    campaign, smtp_sink, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.DELIVERABILITY_MIN_SENDS = 4
    settings.ENGINE_FLUSH_ITEMS = 1
    monkeypatch.setattr("tracking.sending.CONTROL_SECONDS", 0)  # the batch looks at its campaign each message
    for i in range(10):
        LeadFactory(campaign=campaign, email=f"p{i}@example.org", email_status="valid")
    for i in range(3):
        smtp_sink.refuse(f"p{i}@example.org", "550 5.1.1 user unknown")
    [job] = launch(campaign)

    with django_capture_on_commit_callbacks(execute=True):
        try:
            run(job)
        except Exception as exc:  # the campaign's pause stops the batch
            assert "paused" in str(exc).lower() or type(exc).__name__ == "JobStopped"

    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_kind) == ("paused", "deliverability")
    assert campaign.pause_figure.startswith("bounce rate")
    assert len(smtp_sink.messages) < 7  # stopped before the rest of the batch
    assert Suppression.objects.filter(email__in=[f"p{i}@example.org" for i in range(3)]).count() == 3


def test_the_admin_campaign_page_offers_a_resume_that_acknowledges_the_figure(
    campaign, admin_client_logged_in, django_capture_on_commit_callbacks
):
    recipients = sent_recipients(campaign, 100)
    bounce(recipients[:8], django_capture_on_commit_callbacks)
    page = admin_client_logged_in.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'id="refusal-resume"' in page and "bounce rate 8.0% &gt; 5.0%" in page
    assert 'id="action-resume-acknowledged"' in page

    url = f"/admin/campaigns/campaign/{campaign.pk}/act/resume/"
    admin_client_logged_in.post(url)  # without the acknowledgement: refused
    campaign.refresh_from_db()
    assert campaign.status == "paused"
    admin_client_logged_in.post(url, {"acknowledge": "yes"})
    campaign.refresh_from_db()
    assert campaign.status == "running"
    assert DeliverabilityBaseline.objects.filter(campaign=campaign, figure__startswith="bounce rate 8.0%").exists()
