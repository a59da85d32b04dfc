"""Sender mailboxes end to end: each mailbox has its own real SMTP server (an aiosmtpd sink on its
own port, requiring the mailbox's login), recipients are spread over them at launch, and the
caps, the ramp-up, the minimum gap and each mailbox's own breaker hold."""

from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from django.db import connection
from django.utils import timezone

from campaigns.jobs import JobDeferred
from campaigns.mailboxes import mailbox_breaker_reset, mailbox_create, mailbox_pause, mailbox_resume
from campaigns.models import Campaign, Job, Mailbox
from campaigns.registry import OUTREACH_SETTLERS, OutreachOutcome
from campaigns.secrets import secret_decrypt
from campaigns.services import campaign_resume
from campaigns_project.errors import ApplicationError
from queue_control.breakers import mailbox_breaker
from queue_control.models import QueueEvent, QueueState
from queue_control.selectors import breaker_state
from tests.factories import CampaignFactory, JobFactory, LeadFactory
from tests.tracking.conftest import Sink, SinkHandler, free_port
from tests.tracking.test_sending import launch, run
from tracking.models import Recipient
from tracking.sending import recipients_claim

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture
def mailbox_sinks():
    """Start SMTP servers that require a login: `start(username, password)` -> Sink."""
    controllers = []

    def start(username: str, password: str) -> Sink:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == username and auth_data.password.decode() == password
            return AuthResult(success=ok)

        handler, port = SinkHandler(), free_port()
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            authenticator=authenticator,
            auth_require_tls=False,
            auth_required=True,
        )
        controller.start()
        controllers.append(controller)
        return Sink(handler, port)

    yield start
    for controller in controllers:
        controller.stop()


def a_mailbox(campaign: Campaign, name: str, port: int, **fields) -> Mailbox:
    return mailbox_create(
        organization=campaign.organization,
        name=name,
        from_email=f"{name}@acme.example",
        from_name=f"{name.capitalize()} at Acme",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security=Mailbox.SmtpSecurity.NONE,
        smtp_username=name,
        smtp_password=f"{name}-secret",
        campaigns=[campaign],
        **{"daily_cap": 1000, **fields},
    )


def leads(campaign, count: int, prefix: str = "person") -> None:
    for i in range(count):
        LeadFactory(campaign=campaign, email=f"{prefix}{i}@example.org", first_name=f"P{i}", email_status="valid")


def run_all(campaign) -> None:
    for job in launch(campaign):
        run(job)


# --- secrets ----------------------------------------------------------------------------------


def test_a_mailbox_password_is_stored_encrypted_and_decrypts_for_the_login(campaign):
    mailbox = a_mailbox(campaign, "anna", 2525)
    with connection.cursor() as cursor:
        cursor.execute("SELECT smtp_password_encrypted FROM campaigns_mailbox WHERE id = %s", [mailbox.pk])
        [stored] = cursor.fetchone()
    assert "anna-secret" not in stored and stored.startswith("gAAAAA")  # a Fernet token
    assert secret_decrypt(stored) == "anna-secret"


# --- rotation ---------------------------------------------------------------------------------


def test_recipients_are_spread_over_the_mailboxes_and_each_sends_through_its_own_server(campaign, mailbox_sinks):
    anna_sink, ben_sink = mailbox_sinks("anna", "anna-secret"), mailbox_sinks("ben", "ben-secret")
    anna = a_mailbox(campaign, "anna", anna_sink.port)
    ben = a_mailbox(campaign, "ben", ben_sink.port)
    leads(campaign, 6)

    run_all(campaign)

    by_mailbox = {
        mailbox: set(Recipient.objects.filter(mailbox=mailbox).values_list("email", flat=True))
        for mailbox in (anna, ben)
    }
    assert len(by_mailbox[anna]) == len(by_mailbox[ben]) == 3
    assert {a for m in anna_sink.messages for a in m["to"]} == by_mailbox[anna]
    assert {a for m in ben_sink.messages for a in m["to"]} == by_mailbox[ben]
    assert {m["message"]["From"] for m in anna_sink.messages} == {"Anna at Acme <anna@acme.example>"}
    assert {m["message"]["From"] for m in ben_sink.messages} == {"Ben at Acme <ben@acme.example>"}
    assert set(Recipient.objects.values_list("status", flat=True)) == {"sent"}


def test_a_recipient_keeps_its_mailbox_when_recipients_are_assigned_again(campaign, mailbox_sinks):
    a_mailbox(campaign, "anna", 2525)
    leads(campaign, 4)
    launch(campaign)
    before = dict(Recipient.objects.values_list("pk", "mailbox_id"))
    a_mailbox(campaign, "ben", 2526)  # a second mailbox arrives later
    launch(campaign)  # the launcher runs again (a follow-up phase, a relaunch)
    assert dict(Recipient.objects.values_list("pk", "mailbox_id")) == before


def test_a_campaign_without_mailboxes_sends_as_before(campaign, smtp_sink):
    leads(campaign, 2)
    run_all(campaign)
    assert Recipient.objects.filter(mailbox__isnull=True, status="sent").count() == 2
    assert {m["message"]["From"] for m in smtp_sink.messages} == {"Alice at Acme <alice@acme.example>"}


def test_inactive_mailboxes_get_no_recipients(campaign, mailbox_sinks):
    sink = mailbox_sinks("anna", "anna-secret")
    anna = a_mailbox(campaign, "anna", sink.port)
    a_mailbox(campaign, "ben", 2526, active=False)
    leads(campaign, 3)
    run_all(campaign)
    assert set(Recipient.objects.values_list("mailbox_id", flat=True)) == {anna.pk}
    assert len(sink.messages) == 3


# --- caps, ramp-up, gap -------------------------------------------------------------------------


def test_the_daily_cap_holds_across_batches_and_the_rest_waits_without_using_attempts(campaign, mailbox_sinks):
    sink = mailbox_sinks("anna", "anna-secret")
    a_mailbox(campaign, "anna", sink.port, daily_cap=2)
    leads(campaign, 3)
    [job] = launch(campaign)

    with pytest.raises(JobDeferred, match="daily cap reached") as deferred:
        run(job)
    assert 0 < deferred.value.delay <= 300
    assert len(sink.messages) == 2
    waiting = Recipient.objects.get(status="pending")
    assert waiting.send_attempts == 0  # its claim's attempt was given back

    # Another batch (another worker): the cap is counted in Redis, so it sends nothing today.
    with pytest.raises(JobDeferred):
        run(job)
    assert len(sink.messages) == 2


def test_the_ramp_up_raises_the_cap_day_by_day_up_to_the_daily_cap(campaign):
    today = timezone.now().date()
    mailbox = a_mailbox(
        campaign, "anna", 2525, daily_cap=40, ramp_start_cap=5, ramp_daily_increase=10, ramp_started_on=today
    )
    assert [mailbox.cap_on(today + timedelta(days=d)) for d in (0, 1, 2, 3, 4, 30)] == [5, 15, 25, 35, 40, 40]
    assert mailbox.cap_on(today - timedelta(days=3)) == 5  # before the ramp started: its first figure


def test_a_new_mailbox_on_its_first_ramp_day_sends_only_its_first_figure(campaign, mailbox_sinks):
    sink = mailbox_sinks("anna", "anna-secret")
    a_mailbox(campaign, "anna", sink.port, daily_cap=50, ramp_start_cap=1, ramp_daily_increase=5)
    leads(campaign, 3)
    [job] = launch(campaign)
    with pytest.raises(JobDeferred):
        run(job)
    assert len(sink.messages) == 1


def test_the_minimum_gap_holds_between_two_sends_of_a_mailbox(campaign, mailbox_sinks):
    sink = mailbox_sinks("anna", "anna-secret")
    a_mailbox(campaign, "anna", sink.port, min_gap_seconds=60)
    leads(campaign, 2)
    [job] = launch(campaign)
    with pytest.raises(JobDeferred) as deferred:
        run(job)
    assert len(sink.messages) == 1
    assert 55 < deferred.value.delay <= 60


def test_a_ramp_up_that_starts_above_the_cap_is_refused_naming_the_field(campaign):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        a_mailbox(campaign, "anna", 2525, daily_cap=10, ramp_start_cap=20, ramp_daily_increase=1)
    assert "ramp_start_cap" in refused.value.message_dict
    assert not Mailbox.objects.exists()


# --- the test send ---------------------------------------------------------------------------


def test_a_test_send_goes_from_the_campaigns_first_mailbox_or_the_one_named(
    campaign, mailbox_sinks, smtp_sink, alice_client
):
    anna_sink, ben_sink = mailbox_sinks("anna", "anna-secret"), mailbox_sinks("ben", "ben-secret")
    a_mailbox(campaign, "anna", anna_sink.port)
    ben = a_mailbox(campaign, "ben", ben_sink.port)
    url = f"/api/v1/campaigns/{campaign.pk}/test"

    assert alice_client.post(url, {"email": "qa@acme.example"}, format="json").status_code == 200
    assert [m["message"]["From"] for m in anna_sink.messages] == ["Anna at Acme <anna@acme.example>"]
    response = alice_client.post(url, {"email": "qa@acme.example", "mailbox": ben.pk}, format="json")
    assert response.status_code == 200, response.content
    assert [m["message"]["From"] for m in ben_sink.messages] == ["Ben at Acme <ben@acme.example>"]
    assert smtp_sink.messages == []  # never the settings' server while the campaign has mailboxes
    assert campaign.events.filter(action="tracking.test_sent", reason="to qa@acme.example from mailbox ben").exists()


def test_a_test_send_refuses_a_mailbox_it_may_not_use(campaign, org, mailbox_sinks, alice_client):
    sink = mailbox_sinks("anna", "anna-secret")
    anna = a_mailbox(campaign, "anna", sink.port)
    other = a_mailbox(CampaignFactory(organization=org), "otto", sink.port)
    url = f"/api/v1/campaigns/{campaign.pk}/test"

    for mailbox in (other.pk, 999_999):
        response = alice_client.post(url, {"email": "qa@acme.example", "mailbox": mailbox}, format="json")
        assert (response.status_code, list(response.json())) == (400, ["mailbox"])
    Mailbox.objects.filter(pk=anna.pk).update(pause_kind="breaker", pause_figure="ConnectionError")
    response = alice_client.post(url, {"email": "qa@acme.example", "mailbox": anna.pk}, format="json")
    assert response.status_code == 400 and "paused" in response.json()["mailbox"][0]
    response = alice_client.post(url, {"email": "qa@acme.example"}, format="json")  # every mailbox paused
    assert response.status_code == 409 and "every mailbox of the campaign is paused" in response.json()["detail"]
    assert sink.messages == []


def test_a_test_send_through_a_broken_mailbox_counts_against_its_own_breaker(campaign, alice_client, one_failure_opens):
    broken = a_mailbox(campaign, "ben", free_port())  # nothing listens there
    response = alice_client.post(f"/api/v1/campaigns/{campaign.pk}/test", {"email": "qa@acme.example"}, format="json")
    assert response.status_code == 503
    assert breaker_state(mailbox_breaker(broken.pk)) == "open"
    assert breaker_state("smtp") == "closed" and QueueState.get().is_active


# --- one breaker per mailbox -----------------------------------------------------------------


@pytest.fixture
def one_failure_opens(settings):
    settings.BREAKERS = {**settings.BREAKERS, "smtp": {"threshold": 1, "window": 60}}


def test_a_broken_mailbox_stops_only_what_depends_on_it(campaign, org, mailbox_sinks, one_failure_opens):
    sink = mailbox_sinks("anna", "anna-secret")
    broken = a_mailbox(campaign, "ben", free_port())  # nothing listens there: connection refused
    anna = a_mailbox(campaign, "anna", sink.port)
    bystander = CampaignFactory(organization=org, status="running", phase="outreach", channel="smtp")
    anna.campaigns.add(bystander)
    lonely = CampaignFactory(organization=org, status="running", phase="outreach", channel="smtp")
    broken.campaigns.add(lonely)  # ben is its only mailbox
    leads(campaign, 4)

    run_all(campaign)  # ben's connection fails and opens its breaker; anna's recipients go out

    assert breaker_state(mailbox_breaker(broken.pk)) == "open"
    broken.refresh_from_db()
    assert broken.pause_kind == "breaker" and "ConnectionError" in broken.pause_figure
    statuses = dict(Campaign.objects.values_list("pk", "status"))
    assert (statuses[campaign.pk], statuses[bystander.pk], statuses[lonely.pk]) == ("running", "running", "paused")
    lonely.refresh_from_db()
    assert (lonely.pause_kind, lonely.pause_mailbox_id) == ("breaker", broken.pk)
    assert QueueState.get().is_active and breaker_state("smtp") == "closed"
    # Ben's recipients had been sent nothing: they moved to anna, and the next jobs send them.
    assert not Recipient.objects.filter(campaign=campaign, mailbox=broken).exists()
    assert Recipient.objects.filter(campaign=campaign, status="sent").count() == 2
    assert OUTREACH_SETTLERS["smtp"](campaign=campaign).state == OutreachOutcome.MORE
    for job in Job.objects.filter(campaign=campaign, job_type="send_email", status="pending"):
        run(job)
    assert set(Recipient.objects.filter(campaign=campaign).values_list("status", "mailbox_id")) == {("sent", anna.pk)}
    assert {a for m in sink.messages for a in m["to"]} == {f"person{i}@example.org" for i in range(4)}
    assert OUTREACH_SETTLERS["smtp"](campaign=campaign).state == OutreachOutcome.DONE


def test_a_paused_mailboxs_threads_wait_for_its_resume_and_its_unsent_recipients_move(
    campaign, alice, django_capture_on_commit_callbacks
):
    anna, ben = a_mailbox(campaign, "anna", 2525), a_mailbox(campaign, "ben", 2526)
    follow_up = Recipient.objects.create(
        campaign=campaign, email="thread@example.org", mailbox=ben, status="pending", sequence_step=2,
        sent_at=timezone.now(), message_id="<step1.thread@acme.example>",
    )  # fmt: skip
    unsent = Recipient.objects.create(campaign=campaign, email="new@example.org", mailbox=ben, status="pending")
    job = JobFactory(campaign=campaign, job_type="send_email")

    mailbox_pause(mailbox_id=ben.pk, kind="breaker", figure="ConnectionError: refused")

    campaign.refresh_from_db()
    assert campaign.status == "running"  # it goes on from anna
    unsent.refresh_from_db()
    follow_up.refresh_from_db()
    assert (unsent.mailbox_id, follow_up.mailbox_id) == (anna.pk, ben.pk)  # the thread stays with ben
    assert recipients_claim(campaign_id=campaign.pk, job_id=job.pk, limit=10) == [unsent.pk]
    Recipient.objects.filter(pk=unsent.pk).update(status="sent")
    outcome = OUTREACH_SETTLERS["smtp"](campaign=campaign)
    assert outcome.state == OutreachOutcome.WAITING
    assert outcome.message.startswith("Waiting for a mailbox: 1 recipient of paused mailbox ben")
    ben.campaigns.remove(campaign)  # taken off the campaign: its thread still waits, no busy loop of jobs
    assert OUTREACH_SETTLERS["smtp"](campaign=campaign).state == OutreachOutcome.WAITING
    ben.campaigns.add(campaign)

    Job.objects.filter(pk=job.pk).update(status="completed", finished_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        mailbox_resume(mailbox_id=ben.pk, actor=alice)  # its breaker never opened: closed
    # The resume moved the waiting phase on: a send job for the thread that waited.
    assert Job.objects.filter(campaign=campaign, job_type="send_email", status="pending").count() == 1
    assert recipients_claim(campaign_id=campaign.pk, job_id=job.pk, limit=10) == [follow_up.pk]


def test_a_mailbox_resumes_only_by_hand_and_never_while_its_breaker_is_open(
    campaign, alice, mailbox_sinks, one_failure_opens
):
    broken = a_mailbox(campaign, "ben", free_port())
    leads(campaign, 2)
    with pytest.raises(Exception):  # noqa: B017, PT011
        run_all(campaign)

    with pytest.raises(ApplicationError, match="breaker .* is open"):
        mailbox_resume(mailbox_id=broken.pk, actor=alice)
    with pytest.raises(ApplicationError, match="its mailbox's resume"):
        campaign_resume(campaign_id=campaign.pk, actor=alice)
    assert QueueEvent.objects.filter(kind="mailbox.resume_refused", service=mailbox_breaker(broken.pk)).exists()

    mailbox_breaker_reset(mailbox_id=broken.pk, actor=alice)
    campaign.refresh_from_db()
    assert campaign.status == "paused"  # a reset resumes nothing

    mailbox_resume(mailbox_id=broken.pk, actor=alice)
    campaign.refresh_from_db()
    broken.refresh_from_db()
    assert (campaign.status, campaign.pause_kind, broken.pause_kind) == ("running", "", "")
    assert campaign.events.filter(action="campaign.running", reason=f"mailbox {broken.name} resumed").exists()


def test_the_queue_resume_does_not_wake_a_campaign_its_mailbox_paused(campaign, staff, one_failure_opens):
    from queue_control.services import queue_pause, queue_resume

    broken = a_mailbox(campaign, "ben", free_port())
    leads(campaign, 1)
    with pytest.raises(Exception):  # noqa: B017, PT011
        run_all(campaign)
    queue_pause(reason="maintenance", actor=staff)
    queue_resume(actor=staff)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.pause_mailbox_id) == ("paused", broken.pk)
