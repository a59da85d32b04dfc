"""The IMAP reply poller against a real IMAP server: a private dovecot started by each test on its
own port, with its config, state and mail under tmp_path and passwd-file users
(scripts/local_imap.py, which `make run` uses too); messages are put in the mailbox with
imapclient's APPEND, as a mail server's delivery would, then polled."""

import contextlib
import dataclasses
import importlib
import importlib.util
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from imapclient import IMAPClient

from campaigns_project.celery import app as celery_app
from campaigns_project.env import imap_accounts_parse
from tests.tracking.conftest import free_port
from tracking import imap, tasks
from tracking.management.commands.imap_idle import Command as ImapIdle
from tracking.models import EmailEvent, ImapAccountState, Recipient
from tracking.states import EventType

PASSWORD = "alice-imap-pass"
ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("local_imap", ROOT / "scripts" / "local_imap.py")
local_imap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_imap)
SENT_ID = "<20261201.step1@acme.example>"
KEYWORD = "$OutreachProcessed"


@dataclass
class Dovecot:
    port: int

    def account(self, *, key="alice-inbox", password=PASSWORD, port=None) -> imap.ImapAccount:
        return imap.ImapAccount(
            key=key, host="127.0.0.1", port=port or self.port, username="alice", password=password, ssl=False
        )

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=5)
        client.login("alice", PASSWORD)
        return client

    def append(self, raw: bytes, folder="INBOX") -> None:
        with self.client() as client:
            client.append(folder, raw)

    def flags(self) -> dict[int, set[bytes]]:
        with self.client() as client:
            client.select_folder("INBOX", readonly=True)
            return {uid: set(flags) for uid, flags in client.get_flags(client.search(["ALL"])).items()}


@pytest.fixture
def dovecot(tmp_path):
    with dovecot_server(tmp_path) as server:
        yield server


@pytest.fixture
def dovecot_without_idle(tmp_path):
    """A server whose capabilities after login leave IDLE out (dovecot's imap_capability)."""
    with dovecot_server(tmp_path, extra="imap_capability = IMAP4rev1 LITERAL+ ENABLE\n") as server:
        yield server


@contextlib.contextmanager
def dovecot_server(tmp_path, *, extra: str = ""):
    assert local_imap.available(), "run `make system-deps` (dovecot-imapd)"
    port = free_port()
    # A short root: dovecot's unix sockets live under it, and a socket path has at most 107 bytes
    # (pytest's tmp_path under xdist is longer than that, with dovecot's names appended).
    root = Path(tempfile.mkdtemp(prefix="imap-"))
    process = local_imap.start(root, port=port, password=PASSWORD, user="alice", extra=extra)
    try:
        yield Dovecot(port=port)
    finally:
        local_imap.stop(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def erin(campaign):
    return Recipient.objects.create(campaign=campaign, email="erin@example.org", status="sent", message_id=SENT_ID)


@pytest.fixture(autouse=True)
def _poller_settings(settings):
    settings.IMAP_TIMEOUT_SECONDS = 5
    settings.IMAP_IDLE_SECONDS = 30
    settings.INBOUND_MAIL_MAX_BYTES = 64 * 1024


def mail(*, message_id: str, subject="Re: Hello Erin", body="Yes, let's talk.", **headers) -> bytes:
    message = EmailMessage()
    message["From"] = "Erin <erin@example.org>"
    message["To"] = "alice@acme.example"
    message["Subject"] = subject
    message["Date"] = format_datetime(timezone.now())
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


BOUNCE = (
    "From: MAILER-DAEMON@mx.example.org\r\nTo: alice@acme.example\r\nSubject: Undelivered Mail\r\n"
    "Message-ID: <dsn.9@mx.example.org>\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
    "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
    "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
    "Final-Recipient: rfc822; erin@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {SENT_ID}\r\nTo: erin@example.org\r\n--B--\r\n"
).encode()


# --- polling -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_poller_records_a_reply_and_an_auto_reply_and_marks_them_processed_not_seen(dovecot, erin):
    dovecot.append(mail(message_id="<r1@example.org>", In_Reply_To=SENT_ID))
    dovecot.append(mail(message_id="<r2@example.org>", subject="Out of Office: Hello Erin", In_Reply_To=SENT_ID))
    dovecot.append(mail(message_id="<r3@example.org>", subject="Lunch?"))  # answers nothing we sent

    result = imap.imap_poll(account=dovecot.account())

    assert result == {
        "account": "alice-inbox",
        "messages": 3,
        "more": False,
        "reply": 1,
        "auto_reply": 1,
        "unmatched": 1,
    }
    events = {e.provider_event_id: e for e in EmailEvent.objects.filter(recipient=erin)}
    assert events["mail:<r1@example.org>"].type == EventType.REPLY
    assert events["mail:<r2@example.org>"].type == EventType.AUTO_REPLY
    assert events["mail:<r1@example.org>"].payload["via"] == "imap"
    assert events["mail:<r1@example.org>"].payload["account"] == "alice-inbox"
    flags = dovecot.flags()
    assert all(KEYWORD.encode() in f for f in flags.values())
    assert not any(b"\\Seen" in f for f in flags.values())  # a person's unread replies stay unread
    state = ImapAccountState.objects.get(account_key="alice-inbox")
    with dovecot.client() as client:
        uidvalidity = client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"]
    assert (state.uidvalidity, state.last_uid, state.consecutive_failures, state.messages_seen) == (
        uidvalidity,
        3,
        0,
        3,
    )


@pytest.mark.django_db
def test_an_organizations_mailbox_matches_only_that_organizations_recipients(dovecot, erin, other_org):
    dovecot.append(mail(message_id="<r1@example.org>", In_Reply_To=SENT_ID))
    account = dataclasses.replace(dovecot.account(), organization_id=other_org.pk)
    assert imap.imap_poll(account=account)["unmatched"] == 1
    ImapAccountState.objects.all().delete()  # read it again as Acme's own mailbox
    with dovecot.client() as client:
        client.select_folder("INBOX")
        client.remove_flags([1], [KEYWORD.encode()])
    account = dataclasses.replace(account, organization_id=erin.campaign.organization_id)
    assert imap.imap_poll(account=account)["reply"] == 1


@pytest.mark.django_db
def test_a_bounce_in_the_mailbox_bounces_the_recipient(dovecot, erin):
    dovecot.append(BOUNCE)
    assert imap.imap_poll(account=dovecot.account())["bounce"] == 1
    assert Recipient.objects.get(pk=erin.pk).status == "bounced"


@pytest.mark.django_db
def test_a_second_poll_reads_only_what_arrived_since(dovecot, erin):
    dovecot.append(mail(message_id="<r1@example.org>", In_Reply_To=SENT_ID))
    imap.imap_poll(account=dovecot.account())
    dovecot.append(mail(message_id="<r2@example.org>", References=SENT_ID))

    result = imap.imap_poll(account=dovecot.account())

    assert (result["messages"], result["reply"]) == (1, 1)
    assert imap.imap_poll(account=dovecot.account())["messages"] == 0
    assert EmailEvent.objects.filter(recipient=erin, type=EventType.REPLY).count() == 2
    assert ImapAccountState.objects.get().last_uid == 2


@pytest.mark.django_db
def test_a_new_uidvalidity_reads_the_folder_again_and_records_nothing_twice(dovecot, erin):
    dovecot.append(mail(message_id="<r1@example.org>", In_Reply_To=SENT_ID))
    imap.imap_poll(account=dovecot.account())
    ImapAccountState.objects.update(uidvalidity=1)  # as after the folder was rebuilt on the server
    with dovecot.client() as client:  # and the marks were lost with it
        client.select_folder("INBOX")
        client.remove_flags(client.search(["ALL"]), [KEYWORD.encode()])

    result = imap.imap_poll(account=dovecot.account())

    assert (result["messages"], result["duplicate"]) == (1, 1)
    assert EmailEvent.objects.count() == 1
    assert ImapAccountState.objects.get().uidvalidity != 1


@pytest.mark.django_db
def test_a_message_over_the_size_limit_is_matched_by_its_headers_alone(dovecot, erin, settings):
    settings.INBOUND_MAIL_MAX_BYTES = 2048
    dovecot.append(mail(message_id="<big@example.org>", In_Reply_To=SENT_ID, body="attachment " * 1000))
    assert imap.imap_poll(account=dovecot.account())["reply"] == 1


@pytest.mark.django_db
def test_a_message_that_is_not_mail_is_skipped_and_not_read_again(dovecot, erin):
    dovecot.append(b"Subject: no sender at all\r\n\r\nbody\r\n")
    assert imap.imap_poll(account=dovecot.account())["invalid"] == 1
    assert KEYWORD.encode() in dovecot.flags()[1]
    assert imap.imap_poll(account=dovecot.account())["messages"] == 0


@pytest.mark.django_db
def test_a_message_that_breaks_the_reader_is_skipped_and_the_rest_are_read(dovecot, erin, monkeypatch):
    dovecot.append(mail(message_id="<breaks@example.org>", In_Reply_To=SENT_ID))
    dovecot.append(mail(message_id="<fine@example.org>", In_Reply_To=SENT_ID))
    real = imap.inbound_mail_record

    def fragile(*, raw, **kwargs):
        if b"<breaks@example.org>" in raw:
            raise RecursionError("maximum recursion depth exceeded")
        return real(raw=raw, **kwargs)

    monkeypatch.setattr(imap, "inbound_mail_record", fragile)
    assert imap.imap_poll(account=dovecot.account())["failed"] == 1
    assert EmailEvent.objects.get().provider_event_id == "mail:<fine@example.org>"
    assert all(KEYWORD.encode() in flags for flags in dovecot.flags().values())


@pytest.mark.django_db
def test_a_refused_login_is_written_on_the_account_state_and_raises_nothing(dovecot, erin):
    result = imap.imap_poll(account=dovecot.account(password="wrong"))
    assert "error" in result and "LoginError" in result["error"]
    state = ImapAccountState.objects.get(account_key="alice-inbox")
    assert state.consecutive_failures == 1 and "AUTHENTICATIONFAILED" in state.last_error
    dovecot.append(mail(message_id="<r1@example.org>", In_Reply_To=SENT_ID))
    assert imap.imap_poll(account=dovecot.account())["reply"] == 1
    state.refresh_from_db()
    assert (state.consecutive_failures, state.last_error) == (0, "")


@pytest.mark.django_db
def test_an_unreachable_server_is_an_error_on_the_account_state(erin):
    account = imap.ImapAccount(key="gone", host="127.0.0.1", port=free_port(), username="a", password="b", ssl=False)
    result = imap.imap_poll(account=account)
    assert "ConnectionRefusedError" in result["error"]
    imap.imap_poll(account=account)
    assert ImapAccountState.objects.get(account_key="gone").consecutive_failures == 2


@pytest.mark.django_db
def test_the_beat_task_polls_every_configured_account(dovecot, erin, settings):
    settings.IMAP_ACCOUNTS = imap_accounts_parse(
        f'[{{"key": "alice-inbox", "host": "127.0.0.1", "port": {dovecot.port}, "username": "alice", '
        f'"password": "{PASSWORD}", "ssl": false}}, {{"key": "broken", "host": "127.0.0.1", "port": {free_port()}, '
        f'"username": "x", "password": "y", "ssl": false}}]'
    )
    dovecot.append(mail(message_id="<r1@example.org>", In_Reply_To=SENT_ID))

    summary = tasks.poll_imap()

    assert (summary["accounts"], summary["polled"]) == (2, 2)
    by_key = {r["account"]: r for r in summary["results"]}
    assert by_key["alice-inbox"]["reply"] == 1 and "error" in by_key["broken"]
    assert EmailEvent.objects.filter(recipient=erin, type=EventType.REPLY).exists()


@pytest.mark.django_db
def test_a_sender_mailbox_with_imap_credentials_is_read_as_its_organizations_account(dovecot, erin, other_org):
    from campaigns.mailboxes import mailbox_create

    fields = {"from_email": "alice@acme.example", "smtp_host": "127.0.0.1", "smtp_port": 2525}
    imap_fields = {"imap_host": "127.0.0.1", "imap_port": dovecot.port, "imap_username": "alice", "imap_ssl": False}
    mine = mailbox_create(organization=erin.campaign.organization, name="Alice", imap_password=PASSWORD, **fields,
                          **imap_fields)  # fmt: skip
    mailbox_create(organization=other_org, name="No IMAP", **fields)  # no IMAP credentials: not read
    dovecot.append(mail(message_id="<r1@example.org>", In_Reply_To=SENT_ID))

    (account,) = imap.accounts_from_mailboxes()
    assert (account.key, account.organization_id, account.password) == (
        f"mailbox:{mine.pk}",
        erin.campaign.organization_id,
        PASSWORD,  # decrypted for the login only
    )
    summary = tasks.poll_imap()
    assert {r["account"]: r.get("reply") for r in summary["results"]} == {f"mailbox:{mine.pk}": 1}
    assert EmailEvent.objects.filter(recipient=erin, type=EventType.REPLY).exists()


@pytest.mark.django_db
def test_the_migration_creates_the_beat_row_once_on_the_housekeeping_queue():
    migration = importlib.import_module("tracking.migrations.0008_imap_poll_periodic_task")
    PeriodicTask.objects.filter(name=migration.NAME).delete()
    migration.create_periodic_task(django_apps, None)
    migration.create_periodic_task(django_apps, None)

    (row,) = PeriodicTask.objects.filter(task="tracking.tasks.poll_imap")
    assert (row.interval.every, row.interval.period, row.enabled, row.expire_seconds) == (60, "seconds", True, 120)
    assert "tracking.tasks.poll_imap" in celery_app.tasks
    route = django_settings.CELERY_TASK_ROUTES["tracking.tasks.poll_imap"]
    assert route["queue"] == django_settings.CELERY_QUEUE_NAMES["housekeeping"]


# --- IDLE ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_imap_idle_picks_up_a_new_account_and_records_a_reply_as_it_arrives(dovecot, erin, settings):
    """The watcher runs in threads with their own database connections, hence a committed test."""
    settings.IMAP_ACCOUNTS = []
    answer, command = {}, ImapIdle()
    command.refresh_seconds = 0.2
    runner = threading.Thread(target=lambda: answer.update(summary=command.handle(max_seconds=30)))
    runner.start()
    try:
        time.sleep(0.5)  # watching nothing yet
        settings.IMAP_ACCOUNTS = [
            {"key": "alice-inbox", "host": "127.0.0.1", "port": dovecot.port, "username": "alice",
             "password": PASSWORD, "ssl": False, "folder": "INBOX"},
        ]  # fmt: skip
        deadline = time.monotonic() + 8
        while not ImapAccountState.objects.filter(account_key="alice-inbox", last_success_at__isnull=False).exists():
            assert time.monotonic() < deadline, "the watcher never completed its first poll"
            time.sleep(0.1)
        time.sleep(0.5)  # now in IDLE
        arrived = time.monotonic()
        dovecot.append(mail(message_id="<live@example.org>", In_Reply_To=SENT_ID))
        while not EmailEvent.objects.filter(recipient=erin, type=EventType.REPLY).exists():
            assert time.monotonic() - arrived < 6, "the reply was not recorded while idling"
            time.sleep(0.1)
    finally:
        command.stop()
        runner.join(timeout=15)
    assert not runner.is_alive()
    assert answer["summary"].startswith("alice-inbox: idle, ")
    assert "reply 1" in answer["summary"]


@pytest.mark.django_db
def test_imap_idle_refuses_an_unknown_account_and_says_when_it_watched_none(settings):
    from django.core.management.base import CommandError

    settings.IMAP_ACCOUNTS = []
    assert ImapIdle().handle(max_seconds=0.3) == "No IMAP accounts were watched (set IMAP_ACCOUNTS)."
    with pytest.raises(CommandError, match="Unknown IMAP account: nope"):
        ImapIdle().handle(account=["nope"])


@pytest.mark.django_db(transaction=True)
def test_imap_watch_polls_a_server_that_offers_no_idle(dovecot_without_idle, erin, monkeypatch):
    monkeypatch.setattr(imap, "WATCH_POLL_SECONDS", 0.3)
    stop, summary = threading.Event(), {}
    account = dovecot_without_idle.account()
    with dovecot_without_idle.client() as client:
        assert b"IDLE" not in client.capabilities()  # what the watcher will see
    watcher = threading.Thread(target=lambda: summary.update(imap.imap_watch(account=account, stop=stop)))
    watcher.start()
    try:
        dovecot_without_idle.append(mail(message_id="<polled@example.org>", In_Reply_To=SENT_ID))
        deadline = time.monotonic() + 8
        while not EmailEvent.objects.filter(recipient=erin, type=EventType.REPLY).exists():
            assert time.monotonic() < deadline, "the polling watcher never read the message"
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert summary["mode"] == "poll" and summary["outcomes"] == {"reply": 1}
    assert summary["polls"] >= 1


# --- accounts --------------------------------------------------------------------------------------


@pytest.mark.django_db  # the sender mailboxes are a source too
def test_imap_accounts_come_from_the_setting_as_dataclasses(settings):
    settings.IMAP_ACCOUNTS = imap_accounts_parse(
        '[{"key": "a", "host": "imap.example.org", "username": "u", "password": "s3cr3t-pw"}]'
    )
    (account,) = imap.imap_accounts()
    assert account == imap.ImapAccount(
        key="a", host="imap.example.org", port=993, username="u", password="s3cr3t-pw", ssl=True, folder="INBOX"
    )
    assert "s3cr3t-pw" not in repr(account)  # the password is kept out of logs


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "IMAP_ACCOUNTS must be a JSON list"),
        ('{"key": "a"}', "IMAP_ACCOUNTS must be a JSON list"),
        ('[{"key": "a", "host": "h", "username": "u"}]', "IMAP_ACCOUNTS[0].password is required"),
        ('[{"key": "a", "host": "h", "username": "u", "password": "p", "ssl": "yes"}]', "IMAP_ACCOUNTS[0].ssl"),
        ('[{"key": "a", "host": "h", "username": "u", "password": "p", "port": 0}]', "IMAP_ACCOUNTS[0].port"),
        ('[{"key": "a", "host": "h", "username": "u", "password": "p", "tls": true}]', "unknown fields: tls"),
        (
            '[{"key": "a", "host": "h", "username": "u", "password": "p"},'
            ' {"key": "a", "host": "h2", "username": "u", "password": "p"}]',
            "IMAP_ACCOUNTS[1].key 'a' is used twice",
        ),
    ],
)
def test_a_bad_imap_accounts_setting_stops_start_up_naming_the_field(raw, message):
    with pytest.raises(ImproperlyConfigured, match=message.replace("[", r"\[").replace("]", r"\]")):
        imap_accounts_parse(raw)


def test_imap_accounts_is_empty_by_default():
    assert imap_accounts_parse("") == [] and django_settings.IMAP_ACCOUNTS == []


# --- the admin ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_shows_which_mailboxes_are_failing_and_why(admin_client_logged_in):
    ImapAccountState.objects.create(account_key="healthy-inbox", last_uid=41, messages_seen=41)
    ImapAccountState.objects.create(
        account_key="broken-inbox", consecutive_failures=3, last_error="LoginError: [AUTHENTICATIONFAILED]"
    )
    response = admin_client_logged_in.get("/admin/tracking/imapaccountstate/", {"failing": "yes"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "broken-inbox" in html and "AUTHENTICATIONFAILED" in html and "healthy-inbox" not in html
    assert admin_client_logged_in.get("/admin/tracking/imapaccountstate/add/").status_code == 403


@pytest.mark.django_db
def test_metrics_count_the_failing_mailboxes(client, settings):
    settings.METRICS_TOKEN = "metrics-token-0123456789"
    settings.METRICS_CACHE_SECONDS = 0
    ImapAccountState.objects.create(account_key="healthy-inbox")
    ImapAccountState.objects.create(account_key="broken-inbox", consecutive_failures=2, last_error="refused")
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-0123456789").content.decode()
    assert 'cbo_imap_accounts{state="failing"} 1.0' in body
    assert 'cbo_imap_accounts{state="healthy"} 1.0' in body
