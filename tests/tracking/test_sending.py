import re
from email.message import EmailMessage
from email.utils import formatdate

import pytest
from django.core import mail
from django.db.models import F
from rest_framework.test import APIClient

from campaigns.jobs import JobDeferred, JobStopped
from campaigns.models import Campaign, Job
from campaigns.registry import JOB_HANDLERS, OUTREACH_LAUNCHERS
from integrations.errors import ProviderError
from tests.factories import LeadFactory
from tests.tracking.conftest import SITE_URL, free_port, parts, path_of, urls_in
from tracking.models import EmailEvent, Link, Recipient, Suppression
from tracking.sending import recipients_claim
from tracking.services import opens_drain, recipients_add, suppression_add

pytestmark = pytest.mark.django_db(transaction=False)


def launch(campaign) -> list[Job]:
    OUTREACH_LAUNCHERS["smtp"](campaign=campaign)
    return list(Job.objects.filter(campaign=campaign, job_type="send_email", status="pending").order_by("pk"))


def run(job) -> dict:
    """Run a send job as a worker that claimed it would (the claim itself is tested with the runner)."""
    Job.objects.filter(pk=job.pk).update(status="processing", attempts=F("attempts") + 1)
    job.refresh_from_db()
    try:
        return JOB_HANDLERS["send_email"](job=job)
    finally:
        Job.objects.filter(pk=job.pk, status="processing").update(status="pending")


def test_launch_creates_recipients_from_verified_leads_minus_suppressed_and_one_job_per_batch(campaign, settings):
    settings.SEND_BATCH_SIZE = 2
    for i, status in enumerate(["valid", "valid", "catch_all", "invalid", "unverified", "unknown"]):
        LeadFactory(campaign=campaign, email=f"lead{i}@example.org", email_status=status)
    LeadFactory(campaign=campaign, email="Gone@Example.org", email_status="valid")
    suppression_add(organization_id=campaign.organization_id, email="gone@example.org", reason="unsubscribed")

    jobs = launch(campaign)

    emails = sorted(campaign.recipients.values_list("email", flat=True))
    assert emails == ["lead0@example.org", "lead1@example.org", "lead2@example.org"]
    assert len(jobs) == 2
    assert all(job.job_type == "send_email" and job.status == "pending" and job.size == 2 for job in jobs)
    tokens = list(campaign.recipients.values_list("token", flat=True))
    assert len(set(tokens)) == 3 and all(re.fullmatch(r"[0-9a-f]{64}", token) for token in tokens)


def test_with_an_inbound_reply_address_a_reply_that_kept_no_thread_headers_finds_its_recipient(
    campaign, verified_leads, smtp_sink, settings
):
    settings.INBOUND_REPLY_ADDRESS = "replies@inbound.example.com"
    settings.INBOUND_MAIL_SECRET = "inbound-secret-0123456789"
    Campaign.objects.filter(pk=campaign.pk).update(reply_to="")
    for job in launch(campaign):
        run(job)
    recipient = Recipient.objects.get(email="person1@example.org")
    [received] = smtp_sink.to("person1@example.org")
    assert received["Reply-To"] == f"replies+{recipient.token}@inbound.example.com"

    reply = EmailMessage()  # from a client that drops In-Reply-To and References
    reply["From"], reply["To"], reply["Subject"] = "person1@example.org", received["Reply-To"], "Re: hello"
    reply["Date"], reply["Message-ID"] = formatdate(), "<answer.1@example.org>"
    reply.set_content("Yes, call me.")
    answer = APIClient().post(
        "/api/v1/webhooks/inbound-mail/",
        reply.as_bytes(),
        content_type="message/rfc822",
        HTTP_AUTHORIZATION="Bearer inbound-secret-0123456789",
    )
    assert answer.status_code == 200, answer.content
    assert (answer.json()["recipient_id"], answer.json()["matched_by"]) == (recipient.pk, "token")
    assert EmailEvent.objects.filter(recipient=recipient, type="reply").exists()


def test_a_campaigns_own_reply_to_wins_over_the_inbound_reply_address(campaign, verified_leads, smtp_sink, settings):
    settings.INBOUND_REPLY_ADDRESS = "replies@inbound.example.com"
    for job in launch(campaign):
        run(job)
    [received] = smtp_sink.to("person1@example.org")
    assert received["Reply-To"] == "replies@acme.example"


def test_launch_twice_creates_no_second_recipient(campaign, verified_leads):
    launch(campaign)
    launch(campaign)
    assert campaign.recipients.count() == 3


def test_each_recipient_receives_one_tracked_message(campaign, verified_leads, smtp_sink, client):
    for job in launch(campaign):
        run(job)

    assert len(smtp_sink.messages) == 3
    recipient = Recipient.objects.get(email="person1@example.org")
    assert recipient.status == "sent" and recipient.sent_at is not None
    [received] = smtp_sink.to("person1@example.org")
    assert received["Subject"] == "Hello Person1"
    assert received["Message-ID"] == recipient.message_id
    assert re.fullmatch(r"<.+@acme\.example>", recipient.message_id)
    assert (
        received["List-Unsubscribe"]
        .strip()
        .startswith(f"<{SITE_URL}/t/u/{recipient.token}>, <mailto:alice@acme.example?")
    )
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["Reply-To"] == "replies@acme.example"

    text, html = parts(received)
    assert f'<img src="{SITE_URL}/t/o/{recipient.token}.gif"' in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    offer, pricing = (
        Link.objects.get(url="https://example.com/offer?a=1&b=2"),
        Link.objects.get(url="https://example.com/pricing"),
    )
    assert hrefs == [
        f"{SITE_URL}/t/c/{recipient.token}/{offer.pk}",
        f"{SITE_URL}/t/c/{recipient.token}/{pricing.pk}",
        f"{SITE_URL}/t/u/{recipient.token}",
    ]
    assert f"{SITE_URL}/t/c/{recipient.token}/{pricing.pk}." in text  # the sentence's full stop stays outside
    assert "https://example.com" not in " ".join(urls_in(text))

    # The URLs as received work: the click redirects to the stored target, the pixel records an open.
    response = client.get(path_of(hrefs[0]), HTTP_USER_AGENT="Mozilla/5.0 (Macintosh)")
    assert response.status_code == 302 and response["Location"] == "https://example.com/offer?a=1&b=2"
    pixel = re.search(r'<img src="([^"]+)"', html).group(1)
    assert client.get(path_of(pixel), HTTP_USER_AGENT="Mozilla/5.0 (Macintosh)").status_code == 200
    opens_drain()  # the pixel buffers the open in Redis until the beat task drains it
    assert sorted(EmailEvent.objects.filter(recipient=recipient).values_list("type", flat=True)) == ["click", "open"]


def test_a_duplicated_delivery_of_a_send_job_sends_nothing_twice(campaign, verified_leads, smtp_sink):
    [job] = launch(campaign)

    first = run(job)
    second = run(job)  # the same task delivered again

    assert first["sent"] == 3
    assert (second["claimed"], second["sent"]) == (0, 0)
    assert len(smtp_sink.messages) == 3


def test_concurrent_claims_take_disjoint_recipients(campaign, verified_leads):
    launch(campaign)
    first = recipients_claim(campaign_id=campaign.pk, job_id=1, limit=2)
    second = recipients_claim(campaign_id=campaign.pk, job_id=2, limit=2)
    assert len(first) == 2 and len(second) == 1
    assert not set(first) & set(second)
    assert recipients_claim(campaign_id=campaign.pk, job_id=3, limit=2) == []
    assert sorted(Recipient.objects.values_list("send_job_id", "send_attempts")) == [(1, 1), (1, 1), (2, 1)]


def test_recipients_stuck_in_sending_are_never_resent(campaign, verified_leads, smtp_sink):
    [job] = launch(campaign)
    stuck = recipients_claim(campaign_id=campaign.pk, job_id=0, limit=1)  # another job, its worker killed

    result = run(job)

    assert result["sent"] == 2
    assert Recipient.objects.get(pk=stuck[0]).status == "sending"
    assert not smtp_sink.to(Recipient.objects.get(pk=stuck[0]).email)


def test_an_address_suppressed_after_it_was_added_is_never_mailed(campaign, verified_leads, smtp_sink):
    [job] = launch(campaign)
    suppression_add(organization_id=campaign.organization_id, email="PERSON0@example.org", reason="unsubscribed")

    run(job)

    assert not smtp_sink.to("person0@example.org")
    person0 = Recipient.objects.get(email="person0@example.org")
    assert person0.status == "failed" and "suppression list" in person0.last_error
    assert len(smtp_sink.messages) == 2


def test_a_suppressed_address_added_by_hand_is_skipped(campaign, alice):
    suppression_add(organization_id=campaign.organization_id, email="no@example.org", reason="complained")
    counts = recipients_add(campaign=campaign, emails=["No@Example.org", "yes@example.org"], actor=alice)
    assert counts == {"created": 1, "duplicates": 0, "suppressed": 1, "invalid": 0}
    assert list(campaign.recipients.values_list("email", flat=True)) == ["yes@example.org"]


def test_a_4xx_reply_puts_the_recipient_back_to_pending_for_a_retry(campaign, verified_leads, smtp_sink):
    [job] = launch(campaign)
    smtp_sink.refuse("person1@example.org", "451 4.3.0 Mailbox busy, try later")

    run(job)  # one 4xx does not stop the batch

    statuses = dict(Recipient.objects.values_list("email", "status"))
    assert statuses == {
        "person0@example.org": "sent",
        "person1@example.org": "pending",
        "person2@example.org": "sent",
    }
    assert "451" in Recipient.objects.get(email="person1@example.org").last_error

    smtp_sink.handler.refuse.clear()
    run(job)  # the retry sends the rest, and nobody twice
    assert sorted(addr for m in smtp_sink.messages for addr in m["to"]) == [
        "person0@example.org",
        "person1@example.org",
        "person2@example.org",
    ]


def test_a_5xx_user_unknown_bounces_and_suppresses_the_address(campaign, verified_leads, smtp_sink):
    [job] = launch(campaign)
    smtp_sink.refuse("person1@example.org", "550 5.1.1 <person1@example.org>: User unknown")

    result = run(job)

    assert result["sent"] == 2 and result["bounced"] == 1
    person1 = Recipient.objects.get(email="person1@example.org")
    assert person1.status == "bounced" and "5.1.1" in person1.last_error
    assert Suppression.objects.get(email="person1@example.org").reason == "bounced"
    assert EmailEvent.objects.filter(recipient=person1, type="bounce", source="smtp").count() == 1


def test_a_5xx_policy_refusal_fails_the_recipient_without_suppressing(campaign, verified_leads, smtp_sink):
    [job] = launch(campaign)
    smtp_sink.refuse("person1@example.org", "554 5.7.1 Relay access denied")

    result = run(job)

    assert result["failed"] == 1
    assert Recipient.objects.get(email="person1@example.org").status == "failed"
    assert not Suppression.objects.exists()


def test_a_connection_failure_puts_the_batch_back_to_pending(campaign, verified_leads, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2  # nobody listens
    [job] = launch(campaign)

    with pytest.raises(ProviderError) as failure:
        run(job)

    assert failure.value.service == "smtp" and failure.value.counts_for_breaker
    assert set(Recipient.objects.values_list("status", flat=True)) == {"pending"}


def test_injected_smtp_failure_sends_nothing(campaign, verified_leads, smtp_sink, settings):
    settings.SANDBOX_FAIL = ["smtp"]
    [job] = launch(campaign)

    with pytest.raises(ProviderError):
        run(job)

    assert smtp_sink.messages == []
    assert set(Recipient.objects.values_list("status", flat=True)) == {"pending"}


def test_a_paused_campaign_stops_its_batch(campaign, verified_leads, smtp_sink):
    [job] = launch(campaign)
    campaign.status = "paused"
    campaign.save(update_fields=["status"])

    with pytest.raises(JobStopped):  # the runner puts the job back to pending, for the resume
        run(job)

    assert set(Recipient.objects.values_list("status", flat=True)) == {"pending"}
    assert smtp_sink.messages == []


def test_names_are_escaped_in_the_html_part_and_kept_in_the_text_part(campaign, smtp_sink):
    campaign.body_template = '<p>Hi {{ first_name }},</p><p><a href="https://example.com/x">offer</a></p>'
    campaign.subject_template = "For {{ first_name }}"
    campaign.save()
    LeadFactory(
        campaign=campaign, email="x@example.org", first_name="<script>alert(1)</script>\nBob", email_status="valid"
    )
    [job] = launch(campaign)

    run(job)

    [received] = smtp_sink.to("x@example.org")
    text, html = parts(received)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" in text
    assert received["Subject"] == "For <script>alert(1)</script> Bob"  # one header line, as given


def test_a_plain_text_body_is_escaped_in_its_html_part(campaign, smtp_sink):
    campaign.body_template = "Hi {{ first_name }} & co <3, see https://example.com/a"
    campaign.save()
    LeadFactory(campaign=campaign, email="y@example.org", first_name="<b>Bo</b>", email_status="valid")
    [job] = launch(campaign)

    run(job)

    text, html = parts(smtp_sink.to("y@example.org")[0])
    assert "Hi &lt;b&gt;Bo&lt;/b&gt; &amp; co &lt;3" in html
    assert text.startswith("Hi <b>Bo</b> & co <3, see https://track.example.test/t/c/")


# --- The test send -----------------------------------------------------------------------------


def test_a_test_send_mails_one_untracked_sample(campaign, verified_leads, smtp_sink, alice_client):
    response = alice_client.post(f"/api/v1/campaigns/{campaign.pk}/test", {"email": "qa@acme.example"}, format="json")

    assert response.status_code == 200, response.content
    [received] = smtp_sink.to("qa@acme.example")
    assert received["Subject"] == "[Test] Hello Person0"
    assert received["Message-ID"] == response.json()["message_id"]
    text, html = parts(received)
    assert "https://example.com/offer?a=1&amp;b=2" in html and "/t/" not in html + text
    assert "List-Unsubscribe" not in received
    assert not Recipient.objects.exists() and not Link.objects.exists()


def test_a_test_send_needs_a_valid_address_and_an_operator(campaign, alice_client, viewer, charlie_client):
    url = f"/api/v1/campaigns/{campaign.pk}/test"
    response = alice_client.post(url, {"email": "not-an-address"}, format="json")
    assert response.status_code == 400 and "email" in response.json()
    from rest_framework.test import APIClient

    viewer_client = APIClient()
    viewer_client.force_authenticate(viewer)
    assert viewer_client.post(url, {"email": "qa@acme.example"}, format="json").status_code == 403
    assert charlie_client.post(url, {"email": "qa@acme.example"}, format="json").status_code == 404
    assert mail.outbox == []


def test_a_template_error_is_a_400_naming_the_field(campaign, alice_client):
    campaign.body_template = "Hi {% if %}"
    campaign.save()
    response = alice_client.post(f"/api/v1/campaigns/{campaign.pk}/test", {"email": "qa@acme.example"}, format="json")
    assert response.status_code == 400 and "body_template" in response.json()


def test_the_enrichment_line_is_a_template_variable(campaign, smtp_sink):
    campaign.body_template = "Hi {{ first_name }}. {{ personalization }}"
    campaign.save()
    LeadFactory(campaign=campaign, email="z@example.org", email_status="valid", enrichment={"line": "Nice <work>."})
    [job] = launch(campaign)

    run(job)

    text, html = parts(smtp_sink.to("z@example.org")[0])
    assert "Nice <work>." in text and "Nice &lt;work&gt;." in html


def test_the_shared_rate_limit_hands_the_rest_of_the_batch_back(campaign, verified_leads, smtp_sink, settings):
    campaign.send_rate_per_minute = 6  # one token now, the next in ten seconds
    campaign.save()
    settings.ENGINE_TASK_BUDGET_SECONDS = 20  # the rate allows two sends within it: two are claimed
    [job] = launch(campaign)

    with pytest.raises(JobDeferred) as deferred:  # back to pending without using an attempt
        run(job)

    assert 8 < deferred.value.delay <= 10
    assert len(smtp_sink.messages) == 1
    assert sorted(Recipient.objects.values_list("status", flat=True)) == ["pending", "pending", "sent"]
    assert sorted(Recipient.objects.values_list("send_attempts", flat=True)) == [0, 1, 1]


def test_a_message_over_the_render_bound_fails_its_job_and_reaches_no_one(campaign, smtp_sink):
    from campaigns.models import Campaign
    from campaigns.registry import PermanentJobError

    loops = "{% for a in first_name %}{% for b in first_name %}{% for c in first_name %}{{ company }}"
    Campaign.objects.filter(pk=campaign.pk).update(body_template=loops + "{% endfor %}" * 3)  # stored unchecked
    LeadFactory(
        campaign=campaign, email="big@example.org", first_name="B" * 100, company="C" * 100, email_status="valid"
    )
    [job] = launch(campaign)  # 100^3 copies of 100 characters

    with pytest.raises(PermanentJobError, match="larger than 262144 characters"):
        run(job)
    assert smtp_sink.messages == []


def test_a_test_send_is_bounded_too(campaign, alice_client, smtp_sink):
    from campaigns.models import Campaign

    loops = "{% for a in company %}" * 4 + "{% endfor %}" * 4
    Campaign.objects.filter(pk=campaign.pk).update(body_template=loops)
    LeadFactory(campaign=campaign, company="C" * 200)
    response = alice_client.post(f"/api/v1/campaigns/{campaign.pk}/test", {"email": "qa@acme.example"}, format="json")
    assert response.status_code == 400
    assert "too much work" in response.json()["body_template"][0]
    assert smtp_sink.messages == []


def test_a_run_taken_for_dead_stays_stopped_when_the_next_run_opens_its_journal(campaign, verified_leads, smtp_sink):
    """A send run stalled past JOB_STUCK_AFTER_SECONDS is taken for dead: the recovery fences its
    journal and hands its recipients back, and the job runs again. The next run's journal is its
    own, so the stalled run, waking up, can commit nothing; nor may it release recipients that
    are the next run's by now."""
    from campaigns.jobs import job_release
    from tracking.journal import journal_open
    from tracking.sending import SendBatch, send_job_recover

    [job] = launch(campaign)
    Job.objects.filter(pk=job.pk).update(status="processing", attempts=1)
    stalled = Job.objects.get(pk=job.pk)  # run 1, as its worker holds it
    journal_open(job.pk, 1)
    ids = recipients_claim(campaign_id=campaign.pk, job_id=job.pk, limit=10)

    assert "0 marked sent, 3 back to pending" in send_job_recover(job=stalled)  # the sweeper
    assert job_release(stalled, count_attempt=True)
    Job.objects.filter(pk=job.pk).update(status="processing", attempts=2)  # run 2 claims the job
    journal_open(job.pk, 2)
    assert sorted(recipients_claim(campaign_id=campaign.pk, job_id=job.pk, limit=10)) == sorted(ids)

    with pytest.raises(JobStopped):  # run 1 wakes up: its journal is fenced, nothing is committed
        SendBatch(stalled, campaign).run(ids)
    assert smtp_sink.messages == []
    assert set(Recipient.objects.values_list("status", flat=True)) == {"sending"}  # still run 2's
