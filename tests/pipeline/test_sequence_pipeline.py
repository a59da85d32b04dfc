"""A sequence through the whole pipeline: outreach waits (not done, no job pending) while
recipients wait for their next step, and the sweeper, on the simulated clock, arms the due step,
whose jobs send it; then the campaign completes."""

from datetime import UTC, datetime

import pytest
from django.core import mail

from campaigns import services
from campaigns.models import Job
from campaigns.states import JobStatus, Phase
from campaigns.sweeper import engine_sweep
from tracking import clock
from tracking.models import Recipient, SequenceStep, StepSend

from .conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clock():
    clock.clock_set(datetime(2026, 11, 3, 10, 0, tzinfo=UTC))
    yield
    clock.clock_reset()


def test_the_sweeper_sends_each_due_step_and_the_campaign_completes_after_the_last(campaign, alice):
    SequenceStep.objects.create(campaign=campaign, number=2, delay_days=2, body_template="Any thoughts?")
    services.campaign_start(campaign_id=campaign.pk, actor=alice)
    drain(campaign)
    campaign.refresh_from_db()
    recipients = Recipient.objects.filter(campaign=campaign)
    first = len(mail.outbox)
    assert first == recipients.count() > 0
    assert (campaign.status, campaign.phase) == ("running", Phase.OUTREACH)
    assert campaign.status_message.startswith(f"Sequence: {first} recipients waiting for a later step")
    assert not Job.objects.active().filter(campaign=campaign).exists()

    engine_sweep()  # a day early: nothing due
    drain(campaign)
    assert len(mail.outbox) == first

    clock.clock_advance(days=2)
    engine_sweep()
    drain(campaign)
    assert len(mail.outbox) == 2 * first
    assert all(message.subject.startswith("Re: ") for message in mail.outbox[first:])
    assert StepSend.objects.filter(campaign=campaign, step=2).count() == first

    engine_sweep()
    campaign.refresh_from_db()
    assert (campaign.status, campaign.phase) == ("completed", Phase.DONE)
    assert campaign.status_message.endswith(f"{first} sent.")
    assert set(Job.objects.filter(campaign=campaign, job_type="send_email").values_list("status", flat=True)) == {
        JobStatus.COMPLETED
    }
