"""Sequences on simulated time: steps and their delays, reply-in-thread, sending windows, every
stop rule, A/B variants and the compliance footer, sent through a real SMTP sink (aiosmtpd)."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign, Job
from campaigns.registry import JOB_HANDLERS, OUTREACH_LAUNCHERS, OUTREACH_SETTLERS, OutreachOutcome
from tests.factories import CampaignFactory, LeadFactory
from tests.tracking.conftest import parts
from tracking import clock
from tracking.counters import counters_add, counters_derive, counters_read
from tracking.models import Recipient, SequenceSettings, SequenceStep, StepSend, StepVariant
from tracking.sequence_stats import recipient_timeline, two_proportion_z, variant_stats
from tracking.sequences import Plan, sequence_pick_winners, step_due, window_next_open
from tracking.services import event_record

pytestmark = pytest.mark.django_db(transaction=False)

MONDAY = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC


@pytest.fixture(autouse=True)
def _clock():
    clock.clock_set(MONDAY)
    yield
    clock.clock_reset()


def run_jobs(campaign) -> int:
    """Run every pending send job as a worker would, then mark it completed."""
    sent = 0
    for job in Job.objects.filter(campaign=campaign, job_type="send_email", status="pending").order_by("pk"):
        Job.objects.filter(pk=job.pk).update(status="processing", attempts=F("attempts") + 1)
        job.refresh_from_db()
        sent += JOB_HANDLERS["send_email"](job=job)["sent"]
        Job.objects.filter(pk=job.pk).update(status="completed", finished_at=timezone.now())
    return sent


def settle(campaign) -> OutreachOutcome:
    """What the sweeper does while outreach waits: ask the settler again."""
    return OUTREACH_SETTLERS["smtp"](campaign=campaign)


def launch(campaign) -> None:
    OUTREACH_LAUNCHERS["smtp"](campaign=campaign)
    run_jobs(campaign)


def steps(campaign, *delays, business_days=False):
    for number, delay in enumerate(delays, start=2):
        SequenceStep.objects.create(
            campaign=campaign,
            number=number,
            delay_days=delay,
            business_days=business_days,
            same_thread=number != 3,  # step 3 starts a thread of its own
            subject_template="" if number != 3 else "A new idea, {{ first_name }}",
            body_template=f"Step {number} for {{{{ first_name }}}}",
        )


def subjects_to(sink, address):
    return [message["Subject"] for message in sink.to(address)]


def test_a_five_step_two_week_sequence_runs_in_seconds(campaign, verified_leads, smtp_sink):
    steps(campaign, 2, 3, 4, 5)  # 14 days in all
    launch(campaign)
    assert len(smtp_sink.messages) == 3
    recipient = Recipient.objects.get(email="person0@example.org")
    assert recipient.next_send_at == MONDAY + timedelta(days=2)

    for days, expected in ((1, 1), (1, 2), (3, 3), (4, 4), (5, 5)):
        clock.clock_advance(days=days)
        outcome = settle(campaign)
        run_jobs(campaign)
        assert len(smtp_sink.to("person0@example.org")) == expected, f"after {days} more days"
        if expected == 1:
            assert outcome.state == OutreachOutcome.WAITING and "waiting for a later step" in outcome.message

    assert subjects_to(smtp_sink, "person0@example.org") == [
        "Hello Person0",
        "Re: Hello Person0",
        "A new idea, Person0",
        "Re: A new idea, Person0",
        "Re: A new idea, Person0",
    ]
    assert settle(campaign).state == OutreachOutcome.DONE
    sends = list(StepSend.objects.filter(recipient__email="person0@example.org").values_list("step", flat=True))
    assert sends == [1, 2, 3, 4, 5]
    counts = counters_read(campaign_id=campaign.pk)
    assert counts == counters_derive(campaign_id=campaign.pk)  # the repair tool derives the same figures
    assert counts["recipients.sent"] == 3  # recipients, not messages
    assert [counts[f"step.{n}.sent"] for n in range(1, 6)] == [3, 3, 3, 3, 3]
    assert len(smtp_sink.messages) == 15


def test_a_follow_up_in_the_same_thread_answers_the_previous_message(campaign, verified_leads, smtp_sink):
    steps(campaign, 2)
    launch(campaign)
    first = smtp_sink.to("person1@example.org")[0]
    clock.clock_advance(days=2)
    settle(campaign)
    run_jobs(campaign)
    second = smtp_sink.to("person1@example.org")[1]
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["References"] == first["Message-ID"]
    assert second["Subject"] == "Re: Hello Person1"
    assert second["From"] == first["From"] and second["List-Unsubscribe"]
    assert Recipient.objects.get(email="person1@example.org").message_id == second["Message-ID"]


def test_a_campaign_without_steps_sends_once_and_is_done(campaign, verified_leads, smtp_sink):
    launch(campaign)
    clock.clock_advance(days=30)
    assert settle(campaign).state == OutreachOutcome.DONE
    assert len(smtp_sink.messages) == 3
    assert not Recipient.objects.filter(next_send_at__isnull=False).exists()


def test_business_days_skip_weekends_and_holidays():
    friday = datetime(2026, 11, 6, 15, 0, tzinfo=UTC)
    step = SequenceStep(number=2, delay_days=2, business_days=True)
    assert step_due(step=step, after=friday, rules=None) == datetime(2026, 11, 10, 15, 0, tzinfo=UTC)
    rules = SequenceSettings(timezone="UTC", holidays=["2026-11-09"])
    assert step_due(step=step, after=friday, rules=rules) == datetime(2026, 11, 11, 15, 0, tzinfo=UTC)
    calendar = SequenceStep(number=2, delay_days=2, business_days=False)
    assert step_due(step=calendar, after=friday, rules=rules) == datetime(2026, 11, 8, 15, 0, tzinfo=UTC)


def test_the_window_opens_at_the_next_allowed_hour_in_its_zone():
    rules = SequenceSettings(
        window_enabled=True,
        timezone="Europe/Berlin",
        days=[0, 1, 2, 3, 4],
        start_time=time(9),
        end_time=time(17),
        holidays=["2026-11-09"],
    )
    saturday = datetime(2026, 11, 7, 12, 0, tzinfo=UTC)
    # Monday the 9th is a holiday: Tuesday 09:00 in Berlin (UTC+1 in November).
    assert window_next_open(rules=rules, at=saturday) == datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
    inside = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
    assert window_next_open(rules=rules, at=inside) == inside
    evening = datetime(2026, 11, 10, 16, 30, tzinfo=UTC)  # 17:30 in Berlin: closed
    assert window_next_open(rules=rules, at=evening) == datetime(2026, 11, 11, 8, 0, tzinfo=UTC)
    rules.use_lead_timezone = True
    assert window_next_open(rules=rules, at=inside, tz_name="America/New_York") == datetime(
        2026, 11, 10, 14, 0, tzinfo=UTC
    )


def test_nothing_is_sent_outside_the_window_and_work_waits_without_jobs(campaign, verified_leads, smtp_sink):
    SequenceSettings.objects.create(
        campaign=campaign, window_enabled=True, timezone="Europe/Berlin", start_time=time(9), end_time=time(17)
    )
    clock.clock_set(datetime(2026, 11, 7, 12, 0, tzinfo=UTC))  # Saturday
    launch(campaign)

    assert smtp_sink.messages == []
    monday_nine = datetime(2026, 11, 9, 8, 0, tzinfo=UTC)
    assert set(Recipient.objects.values_list("status", "next_send_at", "send_attempts")) == {
        ("pending", monday_nine, 0)
    }
    outcome = settle(campaign)
    assert outcome.state == OutreachOutcome.WAITING
    assert not Job.objects.filter(campaign=campaign, status="pending").exists()  # no job spins meanwhile

    clock.clock_set(monday_nine - timedelta(minutes=1))
    assert settle(campaign).state == OutreachOutcome.WAITING and run_jobs(campaign) == 0
    clock.clock_set(monday_nine)
    assert settle(campaign).state == OutreachOutcome.MORE
    assert run_jobs(campaign) == 3 and len(smtp_sink.messages) == 3


def test_a_window_closing_under_a_batch_holds_the_rest_for_its_opening(campaign, smtp_sink, monkeypatch):
    import tracking.sending

    monkeypatch.setattr(tracking.sending, "CONTROL_SECONDS", 0)  # a control point before every message
    SequenceSettings.objects.create(
        campaign=campaign, window_enabled=True, timezone="UTC", start_time=time(9), end_time=time(17)
    )
    for i in range(6):
        LeadFactory(campaign=campaign, email=f"w{i}@example.org", email_status="valid")
    clock.clock_set(datetime(2026, 11, 10, 16, 59, tzinfo=UTC))
    handle = smtp_sink.handler.handle_DATA

    async def closing_after_two(server, session, envelope):
        answer = await handle(server, session, envelope)
        if len(smtp_sink.messages) == 2:
            clock.clock_set(datetime(2026, 11, 10, 17, 0, tzinfo=UTC))  # 17:00: the window closes
        return answer

    monkeypatch.setattr(smtp_sink.handler, "handle_DATA", closing_after_two)
    launch(campaign)

    assert len(smtp_sink.messages) == 2
    held = Recipient.objects.filter(status="pending")
    assert held.count() == 4
    assert set(held.values_list("next_send_at", "send_attempts")) == {(datetime(2026, 11, 11, 9, 0, tzinfo=UTC), 0)}
    clock.clock_set(datetime(2026, 11, 11, 9, 0, tzinfo=UTC))
    assert settle(campaign).state == OutreachOutcome.MORE
    run_jobs(campaign)
    assert len(smtp_sink.messages) == 6


def test_the_lead_time_zone_holds_only_the_leads_outside_their_own_window(campaign, smtp_sink):
    SequenceSettings.objects.create(
        campaign=campaign, window_enabled=True, timezone="Europe/Berlin", use_lead_timezone=True
    )
    LeadFactory(campaign=campaign, email="berlin@example.org", email_status="valid")
    LeadFactory(
        campaign=campaign, email="ny@example.org", email_status="valid", enrichment={"timezone": "America/New_York"}
    )
    clock.clock_set(datetime(2026, 11, 10, 10, 0, tzinfo=UTC))  # 11:00 in Berlin, 05:00 in New York
    launch(campaign)
    assert [m["to"] for m in smtp_sink.messages] == [["berlin@example.org"]]
    assert Recipient.objects.get(email="ny@example.org").next_send_at == datetime(2026, 11, 10, 14, 0, tzinfo=UTC)


# --- Stop rules --------------------------------------------------------------------------------


def _two_steps_sent_first(campaign, smtp_sink, **rules):
    steps(campaign, 2)
    if rules:
        SequenceSettings.objects.create(campaign=campaign, **rules)
    launch(campaign)
    assert len(smtp_sink.messages) == len(Recipient.objects.filter(campaign=campaign))


def _second_step(campaign):
    clock.clock_advance(days=2)
    settle(campaign)
    run_jobs(campaign)


@pytest.mark.parametrize(
    ("event_type", "reason", "status"),
    [
        ("reply", "replied", "sent"),
        ("bounce", "bounced", "bounced"),
        ("unsubscribe", "unsubscribed", "unsubscribed"),
        ("complain", "complained", "complained"),
    ],
)
def test_these_events_always_stop_the_sequence(campaign, verified_leads, smtp_sink, event_type, reason, status):
    _two_steps_sent_first(campaign, smtp_sink)
    recipient = Recipient.objects.get(email="person0@example.org")
    event_record(type=event_type, recipient_id=recipient.pk, source="api")
    _second_step(campaign)

    recipient.refresh_from_db()
    assert (recipient.stop_reason, recipient.status, recipient.next_send_at) == (reason, status, None)
    assert len(smtp_sink.to("person0@example.org")) == 1
    assert len(smtp_sink.to("person1@example.org")) == 2  # the others go on


def test_a_soft_bounce_does_not_stop_the_sequence(campaign, verified_leads, smtp_sink):
    _two_steps_sent_first(campaign, smtp_sink)
    recipient = Recipient.objects.get(email="person0@example.org")
    event_record(type="bounce", recipient_id=recipient.pk, source="api", with_effects=False)
    _second_step(campaign)
    assert Recipient.objects.get(pk=recipient.pk).stop_reason == ""
    assert len(smtp_sink.to("person0@example.org")) == 2


def test_a_reply_after_the_step_was_armed_stops_it_before_its_claim(campaign, verified_leads, smtp_sink):
    _two_steps_sent_first(campaign, smtp_sink)
    clock.clock_advance(days=2)
    settle(campaign)  # armed: pending on step 2, jobs created
    recipient = Recipient.objects.get(email="person0@example.org")
    assert (recipient.status, recipient.sequence_step) == ("pending", 2)
    event_record(type="reply", recipient_id=recipient.pk, source="api")
    run_jobs(campaign)
    recipient.refresh_from_db()
    assert (recipient.status, recipient.sequence_step, recipient.stop_reason) == ("sent", 1, "replied")
    assert len(smtp_sink.to("person0@example.org")) == 1
    assert settle(campaign).state == OutreachOutcome.DONE


@pytest.mark.parametrize(("stop_on_click", "messages"), [(True, 1), (False, 2)])
def test_a_click_stops_only_when_the_campaign_says_so(campaign, verified_leads, smtp_sink, stop_on_click, messages):
    _two_steps_sent_first(campaign, smtp_sink, stop_on_click=stop_on_click)
    recipient = Recipient.objects.get(email="person0@example.org")
    event_record(type="click", recipient_id=recipient.pk, source="api")
    _second_step(campaign)
    assert len(smtp_sink.to("person0@example.org")) == messages


def test_a_click_on_the_public_url_stops_the_sequence(campaign, verified_leads, smtp_sink, client):
    _two_steps_sent_first(campaign, smtp_sink, stop_on_click=True)
    recipient = Recipient.objects.get(email="person0@example.org")
    link = campaign.links.first()
    response = client.get(f"/t/c/{recipient.token}/{link.pk}", HTTP_USER_AGENT="Mozilla/5.0 (Macintosh)")
    assert response.status_code == 302
    _second_step(campaign)
    assert Recipient.objects.get(pk=recipient.pk).stop_reason == "clicked"
    assert len(smtp_sink.to("person0@example.org")) == 1


@pytest.mark.parametrize(("stop_on_auto_reply", "messages"), [(True, 1), (False, 2)])
def test_an_auto_reply_stops_only_when_the_campaign_says_so(
    campaign, verified_leads, smtp_sink, stop_on_auto_reply, messages
):
    _two_steps_sent_first(campaign, smtp_sink, stop_on_auto_reply=stop_on_auto_reply)
    recipient = Recipient.objects.get(email="person0@example.org")
    event_record(type="auto_reply", recipient_id=recipient.pk, source="api")
    _second_step(campaign)
    assert len(smtp_sink.to("person0@example.org")) == messages


@pytest.mark.parametrize("company_wide", [True, False])
def test_a_reply_can_stop_the_whole_company_domain(campaign, smtp_sink, company_wide):
    for address in ("ann@acme-corp.test", "ben@acme-corp.test", "cid@other.test", "dan@gmail.com", "eve@gmail.com"):
        LeadFactory(campaign=campaign, email=address, email_status="valid")
    _two_steps_sent_first(campaign, smtp_sink, stop_company_on_reply=company_wide)
    for address in ("ann@acme-corp.test", "dan@gmail.com"):
        event_record(type="reply", recipient_id=Recipient.objects.get(email=address).pk, source="api")
    _second_step(campaign)

    assert len(smtp_sink.to("ben@acme-corp.test")) == (1 if company_wide else 2)
    assert len(smtp_sink.to("cid@other.test")) == 2
    assert len(smtp_sink.to("eve@gmail.com")) == 2  # a free-mail domain is no company
    if company_wide:
        assert Recipient.objects.get(email="ben@acme-corp.test").stop_reason == "company_replied"


def test_an_unsubscribe_stops_every_campaign_of_the_organization_at_once(campaign, org, smtp_sink):
    other = CampaignFactory(
        organization=org, status="running", phase="outreach", channel="smtp", send_rate_per_minute=60_000
    )
    for each in (campaign, other):
        LeadFactory(campaign=each, email="pat@example.org", email_status="valid")
        steps(each, 2)
        launch(each)
    assert len(smtp_sink.to("pat@example.org")) == 2
    event_record(type="unsubscribe", recipient_id=Recipient.objects.get(campaign=campaign).pk, source="api")
    _second_step(campaign)
    _second_step(other)
    assert len(smtp_sink.to("pat@example.org")) == 2
    assert Recipient.objects.get(campaign=other).stop_reason == "unsubscribed"


def test_the_one_click_unsubscribe_in_a_follow_up_stops_the_rest(campaign, verified_leads, smtp_sink, client):
    steps(campaign, 2, 2)
    launch(campaign)
    _second_step(campaign)
    [_, second] = smtp_sink.to("person1@example.org")
    url = second["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    response = client.post(
        url.removeprefix("https://track.example.test"),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    _second_step(campaign)
    assert len(smtp_sink.to("person1@example.org")) == 2
    assert len(smtp_sink.to("person0@example.org")) == 3
    assert Recipient.objects.get(email="person1@example.org").stop_reason == "unsubscribed"


# --- A/B variants --------------------------------------------------------------------------------


def test_variants_split_the_step_and_the_winner_alone_goes_to_the_rest(campaign, smtp_sink, settings):
    settings.SEND_BATCH_SIZE = 10
    for i in range(30):
        LeadFactory(campaign=campaign, email=f"ab{i:02}@example.org", first_name=f"P{i}", email_status="valid")
    StepVariant.objects.create(campaign=campaign, step=1, label="A", subject_template="Plain hello", body_template="A")
    StepVariant.objects.create(campaign=campaign, step=1, label="B", subject_template="Bold hello", body_template="B")
    SequenceSettings.objects.create(campaign=campaign, ab_winner_after=10, ab_winner_metric="open")
    OUTREACH_LAUNCHERS["smtp"](campaign=campaign)
    first_job = Job.objects.filter(campaign=campaign, job_type="send_email").order_by("pk").first()
    Job.objects.exclude(pk=first_job.pk).filter(campaign=campaign).update(status="paused")
    run_jobs(campaign)  # the first ten

    first_ten = list(StepSend.objects.values_list("recipient_id", "variant"))
    assert len(first_ten) == 10 and {variant for _, variant in first_ten} == {"A", "B"}
    for message in smtp_sink.messages:
        assert message["message"]["Subject"] in ("Plain hello", "Bold hello")
        assert parts(message["message"])[0].startswith("A" if message["message"]["Subject"] == "Plain hello" else "B")
    for recipient_id, variant in first_ten:
        if variant == "B":
            event_record(type="open", recipient_id=recipient_id, source="api")

    Job.objects.filter(campaign=campaign, status="paused").update(status="pending")
    run_jobs(campaign)  # the next batch sees ten sends of an undecided step: it picks the winner first
    assert list(StepVariant.objects.filter(is_winner=True).values_list("label", flat=True)) == ["B"]
    assert sequence_pick_winners(campaign=campaign) == []  # decided once
    later = StepSend.objects.exclude(recipient_id__in=[pk for pk, _ in first_ten])
    assert later.count() == 20 and set(later.values_list("variant", flat=True)) == {"B"}

    stats = variant_stats(campaign_id=campaign.pk)
    [step] = stats["steps"]
    by_label = {v["variant"]: v for v in step["variants"]}
    assert by_label["B"]["sent"] == 20 + sum(1 for _, v in first_ten if v == "B")
    assert by_label["B"]["opens"] == sum(1 for _, v in first_ten if v == "B")
    assert by_label["A"]["opens"] == 0
    assert by_label["B"]["winner"] is True


def test_a_reply_in_the_thread_repeats_the_subject_of_the_variant_received():
    plan = Plan(
        campaign=Campaign(subject_template="Original"),
        steps={2: SequenceStep(number=2, same_thread=True, subject_template="", body_template="Bump")},
        variants={
            1: [
                StepVariant(step=1, label="A", subject_template="Alpha", body_template="a", weight=1),
                StepVariant(step=1, label="B", subject_template="", body_template="b", weight=1),
            ]
        },
    )
    assert plan.templates_for(7, 2, {1: "A"})[0].subject_template == "Re: Alpha"
    assert plan.templates_for(7, 2, {1: "B"})[0].subject_template == "Re: Original"  # B kept the campaign's
    plan.variants[1][1].is_winner = True  # a winner picked since changes nothing of what was received
    assert plan.templates_for(7, 2, {1: "A"})[0].subject_template == "Re: Alpha"
    assert plan.templates_for(8, 1, {})[1] == "B"


def test_the_z_test_says_when_a_difference_is_significant():
    significant = two_proportion_z(successes_a=30, total_a=200, successes_b=60, total_b=200)
    assert significant["significant"] and significant["p_value"] < 0.01
    noise = two_proportion_z(successes_a=10, total_a=100, successes_b=12, total_b=100)
    assert not noise["significant"] and noise["p_value"] > 0.5
    assert two_proportion_z(successes_a=0, total_a=0, successes_b=1, total_b=10)["p_value"] is None


# --- Compliance and the timeline -------------------------------------------------------------------


def test_every_step_carries_the_postal_address_and_an_unsubscribe_link(campaign, verified_leads, smtp_sink):
    campaign.organization.postal_address = "Acme Inc., 1 Main Street, Springfield"
    campaign.organization.save()
    steps(campaign, 2)
    launch(campaign)
    _second_step(campaign)
    token = Recipient.objects.get(email="person2@example.org").token
    for message in smtp_sink.to("person2@example.org"):
        text, html = parts(message)
        assert "Acme Inc., 1 Main Street, Springfield" in text and "Acme Inc., 1 Main Street, Springfield" in html
        assert f"/t/u/{token}" in text and f"/t/u/{token}" in html
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_timeline_tells_each_step_each_event_and_why_it_stopped(campaign, verified_leads, smtp_sink):
    steps(campaign, 2, 2)
    launch(campaign)
    recipient = Recipient.objects.get(email="person0@example.org")
    event_record(type="open", recipient_id=recipient.pk, source="api", occurred_at=clock.now())
    _second_step(campaign)
    event_record(type="reply", recipient_id=recipient.pk, source="api", occurred_at=clock.now())

    timeline = recipient_timeline(recipient=Recipient.objects.get(pk=recipient.pk))
    assert [(entry["kind"], entry["step"]) for entry in timeline["entries"]] == [
        ("sent", 1),
        ("open", 1),
        ("sent", 2),
        ("reply", 2),
        ("stopped", 2),
    ]
    assert timeline["stop_reason"] == "replied" and timeline["next_send_at"] is None
    assert timeline["steps_total"] == 3


def test_a_journal_replayed_after_a_flush_records_and_counts_each_follow_up_once(campaign, verified_leads, smtp_sink):
    from tracking.services import recipients_mark_sent

    steps(campaign, 2)
    launch(campaign)
    _second_step(campaign)
    flushed, unflushed = (Recipient.objects.get(email=f"person{i}@example.org") for i in (0, 1))
    # person1's acceptance was journaled but its worker died before the flush:
    Recipient.objects.filter(pk=unflushed.pk).update(status="sending", send_job_id=flushed.send_job_id)
    StepSend.objects.filter(recipient=unflushed, step=2).delete()
    counters_add(campaign_id=campaign.pk, metrics={"step.2.sent": -1})
    before = counters_read(campaign_id=campaign.pk)

    replay = {r.pk: (r.message_id, clock.now()) for r in (flushed, unflushed)}
    assert recipients_mark_sent(campaign_id=campaign.pk, job_id=flushed.send_job_id, sent=replay) == 1

    after = counters_read(campaign_id=campaign.pk)
    assert after["recipients.sent"] == before["recipients.sent"] == 3  # a follow-up is no new recipient
    assert after["step.2.sent"] == before["step.2.sent"] + 1 == 3
    assert StepSend.objects.filter(step=2).count() == 3


def test_a_follow_up_resolved_delivered_is_its_step_not_a_new_recipient(campaign, verified_leads, smtp_sink):
    from tracking.services import recipients_resolve

    steps(campaign, 2, 2)
    launch(campaign)
    clock.clock_advance(days=2)
    settle(campaign)  # step 2 armed
    recipient = Recipient.objects.get(email="person0@example.org")
    # Its hand-over was cut off after the commit: left in sending, for an operator.
    Recipient.objects.filter(pk=recipient.pk).update(status="sending", send_job_id=None)
    before = counters_read(campaign_id=campaign.pk)

    assert recipients_resolve(recipient_ids=[recipient.pk], delivered=True) == 1

    recipient.refresh_from_db()
    after = counters_read(campaign_id=campaign.pk)
    assert (recipient.status, recipient.sequence_step) == ("sent", 2)
    assert after["recipients.sent"] == before["recipients.sent"] == 3
    assert after.get("step.2.sent", 0) == before.get("step.2.sent", 0) + 1
    assert StepSend.objects.filter(recipient=recipient, step=2).exists()
    assert recipient.next_send_at == clock.now() + timedelta(days=2)  # step 3 scheduled


def test_a_step_has_one_winner_whoever_picks_it(campaign):
    from django.db import IntegrityError, transaction

    StepVariant.objects.create(campaign=campaign, step=1, label="A", body_template="a", is_winner=True)
    StepVariant.objects.create(campaign=campaign, step=1, label="B", body_template="b")
    with pytest.raises(IntegrityError), transaction.atomic():
        StepVariant.objects.filter(label="B").update(is_winner=True)
    assert list(StepVariant.objects.filter(is_winner=True).values_list("label", flat=True)) == ["A"]
