"""The inbound-mail endpoint: raw MIME from a relay or an ESP's inbound route, authenticated by
INBOUND_MAIL_SECRET (Bearer or a Standard Webhooks signature), matched to the recipient by
In-Reply-To / References or the tracking token, classified, recorded once; and the classifier."""

import base64
import hashlib
import hmac
import time
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from tracking import inbound, outbound
from tracking.counters import counters_read
from tracking.models import EmailEvent, Recipient, Suppression, WebhookEvent
from tracking.selectors import campaign_stats
from tracking.states import EventType

pytestmark = pytest.mark.django_db

SECRET = "inbound-secret-0123456789"
URL = "/api/v1/webhooks/inbound-mail/"
SENT_ID = "<20261201.abc123@acme.example>"


@pytest.fixture(autouse=True)
def _inbound_settings(settings):
    settings.INBOUND_MAIL_SECRET = SECRET
    settings.INBOUND_MAIL_MAX_BYTES = 64 * 1024


@pytest.fixture
def relay():
    """An anonymous client that enforces CSRF, as a relay's server would be."""
    return APIClient(enforce_csrf_checks=True)


@pytest.fixture
def erin(campaign):
    return Recipient.objects.create(campaign=campaign, email="erin@example.org", status="sent", message_id=SENT_ID)


@pytest.fixture
def frank(campaign):
    return Recipient.objects.create(
        campaign=campaign, email="frank@example.org", status="sent", message_id="<other.1@acme.example>"
    )


def mail(
    *,
    subject="Re: Hello Erin",
    body="Sounds good, let's talk on Tuesday.",
    sender="Erin <erin@example.org>",
    to="Alice <alice@acme.example>",
    message_id="<reply.1@example.org>",
    **headers,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(timezone.now() - timezone.timedelta(minutes=5))
    if message_id:
        message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


def post(client, raw: bytes, *, auth: dict | None = None, content_type="message/rfc822"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {SECRET}"} if auth is None else auth
    return client.post(URL, raw, content_type=content_type, **headers)


def signed(raw: bytes, *, secret=SECRET, timestamp=None, msg_id="inb-1") -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{msg_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    return {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": stamp,
        "HTTP_WEBHOOK_SIGNATURE": "v1," + base64.b64encode(digest).decode(),
    }


# --- matching ----------------------------------------------------------------------------------


def test_a_reply_is_matched_by_in_reply_to_and_recorded_as_a_reply(relay, erin, frank):
    response = post(relay, mail(In_Reply_To=SENT_ID, References=SENT_ID))

    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["recorded"], answer["type"], answer["recipient_id"]) == (True, "reply", erin.pk)
    assert answer["matched_by"] == f"message_id {SENT_ID}"
    event = EmailEvent.objects.get()
    assert (event.recipient_id, event.type, event.source) == (erin.pk, EventType.REPLY, "mail")
    assert event.provider_event_id == "mail:<reply.1@example.org>"
    assert event.payload["via"] == "inbound" and event.payload["subject"] == "Re: Hello Erin"
    assert counters_read(campaign_id=erin.campaign_id).get("event.reply") == 1


def test_a_reply_to_an_earlier_sequence_step_is_matched_by_that_steps_message_id(relay, erin):
    from tracking.models_sequences import StepSend

    # Step 2 went out since (its Message-ID is the recipient's last); the reply answers step 1.
    StepSend.objects.create(
        recipient=erin, campaign=erin.campaign, step=1, message_id="<step1.erin@acme.example>", sent_at=timezone.now()
    )
    Recipient.objects.filter(pk=erin.pk).update(message_id="<step2.erin@acme.example>")

    answer = post(relay, mail(In_Reply_To="<step1.erin@acme.example>")).json()

    assert (answer["recorded"], answer["type"], answer["recipient_id"]) == (True, "reply", erin.pk)
    assert Recipient.objects.get(pk=erin.pk).stopped_at is not None  # a reply stops the sequence


def test_a_reply_is_matched_by_references_the_newest_of_ours_first(relay, erin, frank):
    # No In-Reply-To (some clients drop it); References lists the thread oldest first.
    raw = mail(References=f"<unrelated@elsewhere.example> {frank.message_id} {SENT_ID}")
    answer = post(relay, raw).json()
    assert answer["recorded"] is True and answer["recipient_id"] == erin.pk


def test_a_thread_of_thousands_of_references_looks_up_only_the_newest(relay, erin, settings):
    settings.INBOUND_MAIL_MAX_BYTES = 1024 * 1024
    references = " ".join(f"<{i}@x>" for i in range(5_000)) + f" {SENT_ID}"
    with CaptureQueriesContext(connection) as queries:
        answer = post(relay, mail(References=references)).json()
    assert answer["recorded"] is True and answer["recipient_id"] == erin.pk
    lookups = [q["sql"] for q in queries.captured_queries if "message_id" in q["sql"] and "IN (" in q["sql"]]
    assert lookups and all(q.count("@x") <= 2 * 50 for q in lookups)  # at most 50 ids, two forms each


def test_message_ids_are_matched_with_or_without_angle_brackets(relay, campaign):
    bare = Recipient.objects.create(campaign=campaign, email="gina@example.org", message_id="bare.7@acme.example")
    answer = post(relay, mail(In_Reply_To="<bare.7@acme.example>")).json()
    assert answer["recipient_id"] == bare.pk


def test_a_reply_is_matched_by_the_token_in_a_plus_address(relay, erin):
    raw = mail(to=f"Replies <replies+{erin.token}@acme.example>")
    answer = post(relay, raw).json()
    assert (answer["recorded"], answer["recipient_id"], answer["matched_by"]) == (True, erin.pk, "token")


def test_a_reply_is_matched_by_our_tracking_url_quoted_in_its_body(relay, erin, settings):
    quoted = f"Interested!\n\n> Hi Erin, see {settings.SITE_URL}/t/c/{erin.token}/12 for the offer."
    answer = post(relay, mail(body=quoted)).json()
    assert (answer["recorded"], answer["recipient_id"], answer["matched_by"]) == (True, erin.pk, "token")


def test_a_tracking_url_of_another_site_matches_nothing(relay, erin):
    answer = post(relay, mail(body=f"> see https://elsewhere.example/t/c/{erin.token}/12")).json()
    assert answer == {"recorded": False, "reason": "unmatched", "type": "reply"}


def test_an_unknown_message_is_a_200_unmatched_and_records_nothing(relay, erin):
    response = post(relay, mail(In_Reply_To="<never-sent@acme.example>"))
    assert response.status_code == 200
    assert response.json()["reason"] == "unmatched"
    assert not EmailEvent.objects.exists()


def test_the_same_message_posted_twice_is_recorded_once(relay, erin):
    raw = mail(In_Reply_To=SENT_ID)
    assert post(relay, raw).json()["recorded"] is True
    again = post(relay, raw).json()
    assert again == {"recorded": False, "reason": "duplicate message", "type": "reply"}
    assert EmailEvent.objects.count() == 1
    assert counters_read(campaign_id=erin.campaign_id).get("event.reply") == 1


def test_our_own_sent_copy_is_not_a_reply(relay, erin):
    answer = post(relay, mail(sender="alice@acme.example", message_id=SENT_ID)).json()
    assert answer == {"recorded": False, "reason": "own message"}
    assert not EmailEvent.objects.exists()


# --- auto-replies and bounces --------------------------------------------------------------------


def test_an_out_of_office_answer_is_recorded_as_an_auto_reply(relay, erin):
    raw = mail(subject="Automatic reply: Hello Erin", In_Reply_To=SENT_ID, Auto_Submitted="auto-replied")
    answer = post(relay, raw).json()
    assert (answer["recorded"], answer["type"]) == (True, "auto_reply")
    event = EmailEvent.objects.get()
    assert event.type == EventType.AUTO_REPLY
    assert event.payload["classification"] == ["Auto-Submitted: auto-replied", "subject"]
    assert Recipient.objects.get(pk=erin.pk).status == "sent"  # nothing else changes
    stats = campaign_stats(campaign=erin.campaign)
    assert (stats["replies"], stats["auto_replies"], stats["rates"]["reply"]) == (0, 1, 0)


def dsn(*, action="failed", status="5.1.1", original_id=SENT_ID) -> bytes:
    """A delivery-status report (RFC 3464) as Postfix writes one, with the original's headers."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        "To: alice@acme.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn.1@mx.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"\r\n'
        "\r\n"
        "--BOUND\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "This is the mail system at host mx.example.org. Your message could not be delivered.\r\n"
        "--BOUND\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; erin@example.org\r\nAction: {action}\r\nStatus: {status}\r\n"
        "--BOUND\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"From: alice@acme.example\r\nTo: erin@example.org\r\nMessage-ID: {original_id}\r\nSubject: Hello Erin\r\n"
        "--BOUND--\r\n"
    ).encode()


def test_a_delivery_failure_report_bounces_the_recipient_and_suppresses_the_address(relay, erin):
    answer = post(relay, dsn()).json()
    assert (answer["recorded"], answer["type"], answer["recipient_id"]) == (True, "bounce", erin.pk)
    assert Recipient.objects.get(pk=erin.pk).status == "bounced"
    assert Suppression.objects.filter(email="erin@example.org", reason="bounced").exists()
    assert EmailEvent.objects.get().payload["status"] == "5.1.1"


def test_a_temporary_failure_is_recorded_without_suppressing(relay, erin):
    answer = post(relay, dsn(status="4.2.2")).json()
    assert (answer["recorded"], answer["type"]) == (True, "bounce")
    assert Recipient.objects.get(pk=erin.pk).status == "sent"
    assert not Suppression.objects.exists()


def test_a_delayed_delivery_report_records_nothing(relay, erin):
    answer = post(relay, dsn(action="delayed", status="4.4.1")).json()
    assert (answer["recorded"], answer["reason"]) == (False, "ignored")
    assert not EmailEvent.objects.exists()


def test_replies_and_auto_replies_reach_outgoing_webhooks(relay, erin, org, settings):
    settings.OUTGOING_WEBHOOK_SUBSCRIPTIONS_TTL = 0
    outbound.subscriptions_invalidate()
    outbound.endpoint_create(
        organization=org, url="https://hooks.example.com/in", event_types=["email.replied", "email.auto_replied"]
    )
    post(relay, mail(In_Reply_To=SENT_ID))
    post(relay, mail(In_Reply_To=SENT_ID, message_id="<ooo.2@example.org>", X_Autoreply="yes"))
    assert sorted(WebhookEvent.objects.values_list("type", flat=True)) == ["email.auto_replied", "email.replied"]
    replied = WebhookEvent.objects.get(type="email.replied")
    assert replied.data["recipient"] == {"id": erin.pk, "email": "erin@example.org"}
    assert replied.data["source"] == "mail"


# --- authentication, bad input, size -----------------------------------------------------------


def test_a_message_signed_with_the_standard_webhooks_scheme_is_accepted(relay, erin):
    raw = mail(In_Reply_To=SENT_ID)
    response = post(relay, raw, auth=signed(raw))
    assert response.status_code == 200 and response.json()["recorded"] is True


@pytest.mark.parametrize(
    ("auth", "detail"),
    [
        ({}, "Missing webhook-signature"),
        ({"HTTP_AUTHORIZATION": "Bearer wrong-secret-0123456789"}, "Wrong Authorization"),
        ("bad-signature", "No valid signature"),
        ("stale", "outside the tolerance window"),
    ],
)
def test_a_missing_or_wrong_credential_is_a_401_and_records_nothing(relay, erin, auth, detail):
    raw = mail(In_Reply_To=SENT_ID)
    if auth == "bad-signature":
        auth = signed(raw, secret="another-secret-0123456789")
    elif auth == "stale":
        auth = signed(raw, timestamp=int(time.time()) - 3600)
    response = post(relay, raw, auth=auth)
    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert not EmailEvent.objects.exists()


def test_with_no_secret_configured_every_message_is_refused(relay, erin, settings):
    settings.INBOUND_MAIL_SECRET = ""
    response = post(relay, mail(In_Reply_To=SENT_ID), auth={"HTTP_AUTHORIZATION": "Bearer "})
    assert response.status_code == 401 and "No INBOUND_MAIL_SECRET" in response.json()["detail"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "The body is empty"),
        (b"   \r\n", "The body is empty"),
        (b"just some text, no headers at all\n", "does not start with a header field"),
        (b"Subject: hi\r\nTo: a@b.example\r\n\r\nno sender\r\n", "no From header"),
        (b"From: a@b.example\r\nSubject: x\x00y\r\n\r\nbody\r\n", "NUL bytes"),
        (
            b"From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n",
            "NoBoundaryInMultipartDefect",
        ),
        (
            b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\nthe boundary never comes\r\n',
            "StartBoundaryNotFoundDefect",
        ),
    ],
)
def test_malformed_mime_is_a_400_naming_the_problem(relay, erin, raw, problem):
    response = post(relay, raw)
    assert response.status_code == 400, response.content
    assert problem in response.json()["body"][0]
    assert not EmailEvent.objects.exists()


NESTED = b"From: a@b.example\r\n" + b"".join(
    f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode() for i in range(1000)
)


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b.example\r\nSubject: =?utf-8?q?nul=00here?=\r\nIn-Reply-To: " + SENT_ID.encode() + b"\r\n\r\nx",
        b"From: =?x-unknown?q?who?= <a@b.example>\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n\xff\xfe",
        b"From: a@b.example\r\nDate: Mon, 99 Foo 99999 99:99:99 +9999\r\nMessage-ID: <<<>>>\r\n\r\nx",
        b"From: MAILER-DAEMON@x.example\r\nContent-Type: multipart/report; report-type=delivery-status;"
        b' boundary="B"\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n'
        b"Status: 5.\xff\x00.1\r\n--B--\r\n",
        NESTED,
    ],
    ids=["encoded-nul", "unknown-charset", "bad-date-and-ids", "binary-dsn-status", "deep-nesting"],
)
def test_hostile_but_readable_mail_is_answered_never_a_500(relay, erin, raw):
    response = post(relay, raw)
    assert response.status_code in (200, 400), response.content
    assert response.json()


def test_a_message_the_readers_trip_over_is_a_400_and_records_nothing(relay, erin, monkeypatch):
    def trip(message):
        raise IndexError("the header parser's own bug")

    monkeypatch.setattr(inbound, "_candidate_tokens", trip)
    response = post(relay, mail(In_Reply_To=SENT_ID))
    assert response.status_code == 400
    assert response.json() == {"body": ["The message cannot be read: IndexError."]}
    assert not EmailEvent.objects.exists()


def test_undecodable_header_bytes_are_stored_as_replacement_characters(relay, erin):
    raw = mail(In_Reply_To=SENT_ID).replace(b"Subject: Re: Hello Erin", b"Subject: Re: \xff\xfe Erin")
    assert post(relay, raw).json()["recorded"] is True
    assert "Erin" in EmailEvent.objects.get().payload["subject"]


def test_a_relay_may_post_the_message_as_octet_stream_or_text_but_not_as_json(relay, erin):
    raw = mail(In_Reply_To=SENT_ID)
    assert post(relay, raw, content_type="application/octet-stream").json()["recorded"] is True
    response = post(relay, raw, content_type="application/json")
    assert response.status_code == 415 and "message/rfc822" in response.json()["detail"]


def test_an_oversize_message_is_a_413_naming_the_limit(relay, erin, settings):
    raw = mail(In_Reply_To=SENT_ID, body="x" * (settings.INBOUND_MAIL_MAX_BYTES + 1))
    response = post(relay, raw)
    assert response.status_code == 413
    assert f"at most {settings.INBOUND_MAIL_MAX_BYTES}" in response.json()["detail"]
    assert not EmailEvent.objects.exists()


def test_an_oversize_message_is_refused_before_its_credentials_are_checked(relay, erin, settings):
    raw = mail(body="x" * (settings.INBOUND_MAIL_MAX_BYTES + 1))
    assert post(relay, raw, auth={}).status_code == 413


# --- the classifier --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "reply"),
        ({"Auto_Submitted": "no"}, "reply"),
        ({"Auto_Submitted": "auto-replied"}, "auto_reply"),
        ({"Auto_Submitted": "auto-generated"}, "auto_reply"),
        ({"X_Autoreply": "yes"}, "auto_reply"),
        ({"X_Autorespond": "Out of office"}, "auto_reply"),
        ({"Precedence": "bulk"}, "auto_reply"),
        ({"Precedence": "junk"}, "auto_reply"),
        ({"Precedence": "auto_reply"}, "auto_reply"),
        ({"Precedence": "list"}, "reply"),
        ({"X_Auto_Response_Suppress": "All"}, "auto_reply"),
        ({"subject": "Out of Office: Hello Erin"}, "auto_reply"),
        ({"subject": "Automatic reply: Hello Erin"}, "auto_reply"),
        ({"subject": "AutoReply: Hello"}, "auto_reply"),
        ({"subject": "Abwesenheitsnotiz: Hallo"}, "auto_reply"),
        ({"subject": "Réponse automatique : Bonjour"}, "auto_reply"),
        ({"subject": "Re: our out of office software"}, "reply"),
        ({"subject": "Re: Hello Erin"}, "reply"),
    ],
)
def test_the_classifier_tells_automatic_replies_from_human_ones(headers, expected):
    headers = dict(headers)
    subject = headers.pop("subject", "Re: Hello Erin")
    message = inbound.mail_parse(mail(subject=subject, **headers))
    assert inbound.mail_classify(message).kind == expected


def test_a_dsn_without_a_status_is_a_hard_bounce():
    raw = dsn().replace(b"Status: 5.1.1\r\n", b"")
    result = inbound.mail_classify(inbound.mail_parse(raw))
    assert (result.kind, result.hard, result.status) == ("bounce", True, "")


def test_a_bounce_in_prose_from_mailer_daemon_is_a_soft_bounce_not_a_reply(relay, erin, settings):
    raw = mail(
        sender="MAILER-DAEMON@mx.example.org",
        subject="failure notice",
        body=f"I'm afraid I wasn't able to deliver your message.\n> {settings.SITE_URL}/t/o/{erin.token}.gif",
    )
    answer = post(relay, raw).json()
    assert (answer["recorded"], answer["type"], answer["matched_by"]) == (True, "bounce", "token")
    assert EmailEvent.objects.get().payload["bounce_type"] == "soft"
    assert Recipient.objects.get(pk=erin.pk).status == "sent" and not Suppression.objects.exists()


def test_the_classifier_reads_a_dsn_as_a_bounce_with_its_status():
    result = inbound.mail_classify(inbound.mail_parse(dsn(status="5.7.1")))
    assert (result.kind, result.hard, result.status) == ("bounce", True, "5.7.1")


# --- the first way: provider webhooks ------------------------------------------------------------


def test_instantlys_auto_reply_webhook_is_recorded_as_an_auto_reply(relay, erin, settings):
    settings.WEBHOOK_SECRETS = {**settings.WEBHOOK_SECRETS, "instantly": SECRET}
    payload = {
        "event_type": "auto_reply_received",
        "timestamp": timezone.now().isoformat(),
        "campaign_id": str(erin.campaign_id),
        "lead_email": "erin@example.org",
    }
    response = relay.post("/api/v1/webhooks/instantly/", payload, format="json", HTTP_AUTHORIZATION=f"Bearer {SECRET}")
    assert response.status_code == 200 and response.json()["recorded"] is True, response.content
    assert EmailEvent.objects.get().type == EventType.AUTO_REPLY
