"""A worker killed (SIGKILL, in a forked process) in the middle of a follow-up step sends nothing
twice: its journal tells the recovery which hand-overs were accepted (marked sent, their StepSend
written), which one was cut off after its commit (left in sending for an operator) and which were
never handed over (pending again, sent once by the next run)."""

import asyncio
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from django.db import connections
from django.db.models import F

from campaigns.models import Job
from campaigns.registry import JOB_HANDLERS, JOB_RECOVERERS, OUTREACH_LAUNCHERS, OUTREACH_SETTLERS
from tests.factories import LeadFactory
from tests.tracking.conftest import SinkHandler, free_port
from tracking import clock
from tracking.models import Recipient, SequenceStep, StepSend

pytestmark = pytest.mark.django_db(transaction=True)


class SlowSink(SinkHandler):
    """Stores each message, then takes a while to answer: a kill lands between the two."""

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(0.15)
        return answer


@pytest.fixture
def slow_sink(settings):
    handler = SlowSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield handler
    finally:
        controller.stop()


def run(job) -> dict:
    Job.objects.filter(pk=job.pk).update(status="processing", attempts=F("attempts") + 1)
    job.refresh_from_db()
    return JOB_HANDLERS["send_email"](job=job)


def second_steps(handler) -> Counter:
    return Counter(m["to"][0] for m in handler.messages if m["message"]["Subject"].startswith("Re:"))


def test_a_worker_killed_mid_step_sends_nothing_twice(campaign, slow_sink):
    clock.clock_set(datetime(2026, 11, 2, 10, 0, tzinfo=UTC))
    try:
        for i in range(12):
            LeadFactory(campaign=campaign, email=f"k{i:02}@example.org", email_status="valid")
        SequenceStep.objects.create(campaign=campaign, number=2, delay_days=1, body_template="Following up")
        OUTREACH_LAUNCHERS["smtp"](campaign=campaign)
        [first] = Job.objects.filter(campaign=campaign, job_type="send_email")
        assert run(first)["sent"] == 12
        Job.objects.filter(pk=first.pk).update(status="cancelled", finished_at=clock.now())

        clock.clock_advance(days=1)
        OUTREACH_SETTLERS["smtp"](campaign=campaign)  # arms step 2 and creates its job
        [job] = Job.objects.filter(campaign=campaign, job_type="send_email", status="pending")
        Job.objects.filter(pk=job.pk).update(status="processing", attempts=F("attempts") + 1)
        job.refresh_from_db()

        connections.close_all()  # the child opens its own connections
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                JOB_HANDLERS["send_email"](job=job)
            finally:
                os._exit(0)
        deadline = time.monotonic() + 30
        while sum(second_steps(slow_sink).values()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        before_recovery = sum(second_steps(slow_sink).values())
        assert 4 <= before_recovery < 12, "the kill did not land mid-step"

        note = JOB_RECOVERERS["send_email"](job=job)  # what the sweeper does for a lost worker
        assert note.startswith("From its send journal")
        uncertain = set(Recipient.objects.filter(status="sending").values_list("email", flat=True))
        assert len(uncertain) <= 1
        Job.objects.filter(pk=job.pk).update(status="pending")
        job.refresh_from_db()
        run(job)

        received = second_steps(slow_sink)
        assert max(received.values()) == 1  # nobody got step 2 twice
        assert set(received) == {f"k{i:02}@example.org" for i in range(12)}
        recorded = set(StepSend.objects.filter(step=2).values_list("recipient__email", flat=True))
        assert recorded | uncertain == set(received) and not recorded & uncertain
        assert Recipient.objects.filter(status="sent", sequence_step=2).count() == 12 - len(uncertain)
        assert not Recipient.objects.filter(next_send_at__lte=clock.now() + timedelta(days=1)).exists()
    finally:
        clock.clock_reset()
