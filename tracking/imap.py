"""Replies read from the sender mailboxes by IMAP (imapclient): new messages are fetched, recorded
through tracking.inbound (the same path as the inbound-mail endpoint) and marked processed.

- **Accounts** come from `imap_accounts()`, which asks each source in ACCOUNT_SOURCES: today the
  IMAP_ACCOUNTS setting; the organization's mailboxes join as a second source (one more dotted
  path there), each returning ImapAccount values.
- **Where we stand** in each mailbox is an ImapAccountState row keyed by the account key:
  UIDVALIDITY and the last UID handled. A new UIDVALIDITY (or a first visit) reads the last
  IMAP_LOOKBACK_DAYS again; the events' unique Message-ID key makes that harmless.
- **Marking**: each message handled gets the IMAP_PROCESSED_KEYWORD keyword where the folder allows
  keywords (PERMANENTFLAGS `\\*`); \\Seen is never set, so a person's unread replies stay unread.
  Bodies are fetched with BODY.PEEK for the same reason.
- **Two ways to run**: the beat task `tracking.tasks.poll_imap` (every minute, housekeeping queue)
  and `manage.py imap_idle`, which waits in IDLE where the server offers it (polling otherwise)
  and reads new mail as it arrives. A Redis lock per account keeps two pollers of one mailbox from
  working at once.
- **Failures** of a mailbox (refused login, unreachable server) are written on its state row
  (consecutive_failures, last_error, visible in the admin) and logged; they open no breaker and
  pause nothing (docs/decisions.md, "Replies by mail").
"""

import contextlib
import imaplib
import logging
import secrets
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from campaigns_project.redis import get_redis, rkey

from .inbound import InboundMailInvalid, inbound_mail_record
from .models import ImapAccountState

logger = logging.getLogger(__name__)

# Where IMAP accounts come from, as dotted paths of functions returning ImapAccount values: the
# installation's (IMAP_ACCOUNTS) and every organization's sender mailboxes with IMAP credentials.
ACCOUNT_SOURCES: tuple[str, ...] = ("tracking.imap.accounts_from_settings", "tracking.imap.accounts_from_mailboxes")

# What a broken mailbox raises: protocol errors, the server hanging up, sockets, TLS.
IMAP_ERRORS = (IMAPClientError, imaplib.IMAP4.error, OSError, socket.timeout, ssl.SSLError, EOFError)
LOCK_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# Without IDLE, imap_watch polls this often; after a failure it waits 5 s · 2^(n−1), at most this.
WATCH_POLL_SECONDS = 60
WATCH_MAX_BACKOFF_SECONDS = 300


@dataclass(frozen=True)
class ImapAccount:
    key: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    ssl: bool = True
    folder: str = "INBOX"
    # An organization's own mailbox matches only that organization's recipients; None (the
    # installation's accounts from settings) matches any.
    organization_id: int | None = None


def accounts_from_settings() -> list[ImapAccount]:
    return [ImapAccount(**item) for item in settings.IMAP_ACCOUNTS]


def accounts_from_mailboxes() -> list[ImapAccount]:
    """Each sender mailbox with IMAP credentials, matching only its organization's recipients. A
    password that no longer decrypts (a rotated-away key) leaves that mailbox out, logged."""
    from campaigns.models import Mailbox
    from campaigns.secrets import secret_decrypt

    accounts = []
    for mailbox in Mailbox.objects.exclude(imap_host="").exclude(imap_username=""):
        try:
            password = secret_decrypt(mailbox.imap_password_encrypted) if mailbox.imap_password_encrypted else ""
        except ValueError as exc:
            logger.warning("Mailbox %s is not read by IMAP: %s", mailbox.pk, exc)
            continue
        accounts.append(
            ImapAccount(
                key=f"mailbox:{mailbox.pk}",
                host=mailbox.imap_host,
                port=mailbox.imap_port,
                username=mailbox.imap_username,
                password=password,
                ssl=mailbox.imap_ssl,
                organization_id=mailbox.organization_id,
            )
        )
    return accounts


def imap_accounts() -> list[ImapAccount]:
    """Every IMAP account to read, from every source; the first source to name a key wins."""
    accounts: dict[str, ImapAccount] = {}
    for path in ACCOUNT_SOURCES:
        source: Callable[[], Iterable[ImapAccount]] = import_string(path)
        for account in source():
            accounts.setdefault(account.key, account)
    return list(accounts.values())


def imap_connect(account: ImapAccount) -> IMAPClient:
    """A logged-in client. With ssl, the server's certificate is verified (imapclient's default
    context); without it, plaintext IMAP, as a local relay or the tests' dovecot speak."""
    client = IMAPClient(account.host, port=account.port, ssl=account.ssl, timeout=settings.IMAP_TIMEOUT_SECONDS)
    try:
        client.login(account.username, account.password)
    except BaseException:
        _logout(client)
        raise
    return client


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # a connection already broken: nothing left to close politely
        with contextlib.suppress(Exception):
            client.shutdown()


# --- one poll --------------------------------------------------------------------------------


class _Lock:
    """A Redis lock per account (SET NX EX), released only by its holder. Redis being down does
    not stop polling: recording is idempotent, so two pollers at once only cost double work."""

    def __init__(self, key: str, ttl: int):
        self.key, self.ttl, self.value = rkey("imap", "lock", key), ttl, secrets.token_hex(8)

    def acquire(self) -> bool:
        try:
            return bool(get_redis().set(self.key, self.value, nx=True, ex=self.ttl))
        except Exception as exc:  # redis.RedisError and connection errors alike
            logger.warning("IMAP poll lock unavailable (%s); polling without it", exc)
            self.value = ""
            return True

    def release(self) -> None:
        if self.value:
            try:
                get_redis().eval(LOCK_RELEASE, 1, self.key, self.value)
            except Exception as exc:  # the lock expires by itself
                logger.warning("IMAP poll lock not released: %s", exc)


def imap_poll(*, account: ImapAccount, client: IMAPClient | None = None) -> dict:
    """Read and record what is new in one account's folder, with `client` (a logged-in client,
    e.g. imap_watch's) or a connection of its own. Returns the counts of what happened; a failing
    mailbox is reported in the answer and on its state row, never raised."""
    lock = _Lock(account.key, ttl=settings.IMAP_TIMEOUT_SECONDS * 4 + 60)
    if not lock.acquire():
        return {"account": account.key, "skipped": "another poller is reading this mailbox"}
    own = client is None
    try:
        if own:
            client = imap_connect(account)
        return {"account": account.key, **_poll_folder(client, account)}
    except IMAP_ERRORS as exc:
        message = f"{exc.__class__.__name__}: {exc}"[:1000]
        logger.warning("IMAP account %s failed: %s", account.key, message)
        ImapAccountState.objects.get_or_create(account_key=account.key, defaults={"folder": account.folder})
        ImapAccountState.objects.filter(account_key=account.key).update(
            consecutive_failures=F("consecutive_failures") + 1, last_error=message, last_polled_at=timezone.now()
        )
        return {"account": account.key, "error": message}
    finally:
        if own and client is not None:
            _logout(client)
        lock.release()


def _poll_folder(client: IMAPClient, account: ImapAccount) -> dict:
    state, _ = ImapAccountState.objects.get_or_create(account_key=account.key, defaults={"folder": account.folder})
    selected = client.select_folder(account.folder)
    uidvalidity = int(selected[b"UIDVALIDITY"])
    uidnext = int(selected.get(b"UIDNEXT") or 0)
    keyword = settings.IMAP_PROCESSED_KEYWORD
    can_mark = b"\\*" in tuple(selected.get(b"PERMANENTFLAGS") or ())
    fresh = state.uidvalidity != uidvalidity or state.folder != account.folder
    if fresh:
        criteria = ["SINCE", date.today() - timedelta(days=settings.IMAP_LOOKBACK_DAYS)]
        last_uid = 0
    else:
        criteria = ["UID", f"{state.last_uid + 1}:*"]
        last_uid = state.last_uid
    if can_mark:
        criteria += ["NOT", "KEYWORD", keyword]
    # `UID n:*` always matches the newest message, even when its UID is below n.
    found = sorted(uid for uid in client.search(criteria) if uid > last_uid)
    todo = found[: settings.IMAP_MAX_MESSAGES_PER_POLL]
    outcomes: Counter = Counter()
    for start in range(0, len(todo), settings.IMAP_FETCH_BATCH):
        batch = todo[start : start + settings.IMAP_FETCH_BATCH]
        for raw in _fetch(client, batch):
            outcomes[_record(raw, account)] += 1
        if can_mark:
            client.add_flags(batch, [keyword.encode()], silent=True)
        last_uid = batch[-1]
        ImapAccountState.objects.filter(pk=state.pk).update(
            uidvalidity=uidvalidity,
            folder=account.folder,
            last_uid=last_uid,
            messages_seen=F("messages_seen") + len(batch),
        )
    if len(todo) == len(found) and uidnext:
        last_uid = max(last_uid, uidnext - 1)  # nothing left below UIDNEXT: skip it next time
    now = timezone.now()
    ImapAccountState.objects.filter(pk=state.pk).update(
        uidvalidity=uidvalidity,
        folder=account.folder,
        last_uid=last_uid,
        last_polled_at=now,
        last_success_at=now,
        consecutive_failures=0,
        last_error="",
    )
    return {"messages": len(todo), "more": len(found) > len(todo), **dict(outcomes)}


def _fetch(client: IMAPClient, uids: list[int]) -> list[bytes]:
    """The raw messages, whole up to INBOUND_MAIL_MAX_BYTES and only their headers above it (the
    headers carry In-Reply-To and References). BODY.PEEK leaves \\Seen as it was."""
    limit = settings.INBOUND_MAIL_MAX_BYTES
    sizes = client.fetch(uids, ["RFC822.SIZE"])
    small = [uid for uid in uids if sizes.get(uid, {}).get(b"RFC822.SIZE", 0) <= limit]
    large = [uid for uid in uids if uid not in small]
    raws = {}
    if small:
        raws.update({uid: data.get(b"BODY[]", b"") for uid, data in client.fetch(small, ["BODY.PEEK[]"]).items()})
    if large:
        fetched = client.fetch(large, ["BODY.PEEK[HEADER]"])
        raws.update({uid: data.get(b"BODY[HEADER]", b"") for uid, data in fetched.items()})
    return [raws[uid] for uid in uids if uid in raws]


def _record(raw: bytes, account: ImapAccount) -> str:
    """One message through the shared path. Each is its own transaction (event_record's): replies
    are few, and one bad message must not undo the others."""
    try:
        answer = inbound_mail_record(raw=raw, via="imap", account=account.key, organization_id=account.organization_id)
    except InboundMailInvalid as exc:
        logger.info("IMAP account %s: a message that is not readable mail was skipped: %s", account.key, exc)
        return "invalid"
    except DatabaseError:
        raise  # not the message's fault: it stays unmarked and is read again next time
    except Exception:
        # A message that breaks the reader must not block the mailbox: logged, marked, skipped.
        logger.exception("IMAP account %s: a message could not be read and was skipped", account.key)
        return "failed"
    if answer["recorded"]:
        return answer["type"]
    return answer["reason"].split()[0]  # unmatched, duplicate, own, ignored


def imap_poll_all(*, budget_seconds: float = 90) -> dict:
    """The beat task's work: poll every account, the least recently polled first, until the
    budget (below the task's soft time limit) is spent; the rest go first next time."""
    accounts = imap_accounts()
    polled_at = dict(
        ImapAccountState.objects.filter(account_key__in=[a.key for a in accounts]).values_list(
            "account_key", "last_polled_at"
        )
    )
    epoch = timezone.now() - timedelta(days=36500)
    accounts.sort(key=lambda a: polled_at.get(a.key) or epoch)
    deadline = time.monotonic() + budget_seconds
    results = []
    for account in accounts:
        if time.monotonic() > deadline:
            break
        results.append(imap_poll(account=account))
    return {"accounts": len(accounts), "polled": len(results), "results": results}


# --- waiting for new mail ------------------------------------------------------------------------


def imap_watch(*, account: ImapAccount, stop: threading.Event, report: Callable[[dict], None] | None = None) -> dict:
    """Until `stop` is set: poll, then wait for new mail in IDLE (RFC 2177) where the server offers
    it, renewing the IDLE every IMAP_IDLE_SECONDS; without IDLE, poll every WATCH_POLL_SECONDS. A
    lost connection is made again after a backoff. Returns what it did (mode, polls, outcomes)."""
    summary: dict = {"account": account.key, "mode": "", "polls": 0, "errors": 0, "outcomes": Counter()}
    failures = 0

    def poll(client: IMAPClient | None) -> None:
        result = imap_poll(account=account, client=client)
        summary["polls"] += 1
        counts = {k: v for k, v in result.items() if type(v) is int and k != "messages"}  # not `more`, a bool
        summary["outcomes"].update(counts)
        if "error" in result:
            raise ConnectionError(result["error"])
        if report:
            report(result)

    try:
        while not stop.is_set():
            client = None
            try:
                client = imap_connect(account)
                idle = b"IDLE" in client.capabilities()
                summary["mode"] = "idle" if idle else "poll"
                poll(client)
                failures = 0
                while not stop.is_set():
                    # New mail or the IDLE's renewal: either way a poll reads what is new.
                    if idle:
                        _idle_wait(client, stop)
                    else:
                        stop.wait(WATCH_POLL_SECONDS)
                    if not stop.is_set():
                        poll(client)
            except Exception as exc:  # the mailbox, or the database: either way, wait and start over
                failures += 1
                summary["errors"] += 1
                if isinstance(exc, (*IMAP_ERRORS, ConnectionError)):
                    logger.warning("IMAP watch of %s: %s; reconnecting", account.key, exc)
                else:
                    logger.exception("IMAP watch of %s failed; starting over", account.key)
                    connection.close()  # a broken database connection is not reused
                stop.wait(min(WATCH_MAX_BACKOFF_SECONDS, 5 * 2 ** (failures - 1)))
            finally:
                if client is not None:
                    _logout(client)
    finally:
        connection.close()  # this thread's database connection
    summary["outcomes"] = dict(summary["outcomes"])
    return summary


def _idle_wait(client: IMAPClient, stop: threading.Event) -> bool:
    """One IDLE, until the server reports a change (True), IMAP_IDLE_SECONDS pass or `stop` is
    set (False). Checked in 1 s slices so that a stop is honoured promptly."""
    client.idle()
    try:
        deadline = time.monotonic() + settings.IMAP_IDLE_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            responses = client.idle_check(timeout=1)
            if any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                return True
        return False
    finally:
        client.idle_done()
