"""Replies that arrive as mail: parsed, classified, matched to the recipient we wrote to, recorded.

Two paths bring the mail here, and both end in `inbound_mail_record`: the inbound-mail endpoint
(raw MIME posted by a relay or an ESP's inbound route, tracking/api_inbound.py) and the IMAP poller
(tracking/imap.py). Recording goes through services.event_record like the provider webhooks, so
counters, live updates and outgoing webhooks see these events as they see any other.

- **Classification** (`mail_classify`): a delivery-status report (RFC 3464) is a bounce; a message
  with an automatic-reply mark (RFC 3834 Auto-Submitted other than `no`, X-Autoreply,
  X-Autorespond, Precedence auto_reply/bulk/junk, X-Auto-Response-Suppress) or an out-of-office
  subject is an auto-reply; anything else is a human reply.
- **Matching** (`mail_read`, then `mail_match`): by the Message-IDs it answers (In-Reply-To, then References newest
  first; a bounce's embedded original headers first), through the one selector
  `selectors.recipient_for_message_ids`; otherwise by the tracking token in a plus-address
  (`replies+<token>@…`) or in our own tracking URLs quoted in the body.
- **Idempotency**: the event's (source `mail`, provider_event_id `mail:<Message-ID>`) is unique, so
  the same message posted twice, or seen both by the endpoint and the poller, is recorded once.
"""

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from typing import cast

from django.conf import settings
from django.core.exceptions import ValidationError

from campaigns_project.datetimes import event_time_accept

from . import selectors, services
from .models import Recipient
from .states import EventType

SOURCE = "mail"
MESSAGE_ID = re.compile(r"<([^<>\s]{1,250})>")
# Tokens are secrets.token_urlsafe(24): 32 characters of the URL-safe alphabet.
TOKEN = r"[A-Za-z0-9_-]{16,64}"
PLUS_ADDRESS = re.compile(rf"^[^@+\s]+\+({TOKEN})@", re.IGNORECASE)
# At most this many Message-IDs (the most recent of a thread) and tokens are looked up per message:
# a hostile References header of thousands of ids must not become a query of thousands of values.
MAX_CANDIDATES = 50
# Headers a reply's own addresses may sit in once relays have rewritten To.
ADDRESS_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")

# RFC 3834 and the headers common autoresponders add instead of (or besides) it.
AUTO_PRECEDENCE = {"auto_reply", "bulk", "junk"}
AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Response-Suppress")
# Subjects autoresponders start with (Outlook, Gmail, Exchange, in the languages seen most).
AUTO_SUBJECT = re.compile(
    r"^\s*(?:"
    r"automatic reply|auto(?:matic)?[- ]?reply|auto[- ]?response|autoresponse|auto:"
    r"|out of (?:the )?office|ooo\b|away from (?:the )?office|on vacation|vacation reply"
    r"|abwesenheitsnotiz|automatische antwort|réponse automatique|absence du bureau"
    r"|respuesta automática|fuera de la oficina|risposta automatica|fuori sede"
    r"|automatisch antwoord|niet aanwezig|resposta automática"
    r")",
    re.IGNORECASE,
)
# Of a delivery-status report, only a final failure is a bounce; `delayed` and `delivered`
# reports say nothing we act on.
DSN_FAILED_ACTIONS = {"failed"}
# Senders of bounces written in prose by MTAs that send no delivery-status report.
BOUNCE_SENDERS = {"mailer-daemon", "postmaster"}


class InboundMailInvalid(ValidationError):
    """The body is not a mail message we can read: a 400 naming the problem, nothing recorded."""

    def __init__(self, message: str):
        super().__init__({"body": [message]})


@dataclass
class Classification:
    kind: str  # reply | auto_reply | bounce | ignored
    reasons: list[str] = field(default_factory=list)
    hard: bool = True  # bounces: a permanent failure (5.x.x) suppresses the address
    status: str = ""  # bounces: the DSN Status, e.g. 5.1.1


# --- parsing -------------------------------------------------------------------------------------


def mail_parse(raw: bytes) -> EmailMessage:
    """A message from raw RFC 5322 bytes, or InboundMailInvalid saying why not. Python's parser
    accepts anything, so the checks below decide what is a message: a header block with a From,
    and for a multipart message a boundary that is present and used."""
    if not raw or not raw.strip():
        raise InboundMailInvalid("The body is empty; expected a raw MIME message (message/rfc822).")
    if b"\x00" in raw:
        raise InboundMailInvalid("The message contains NUL bytes.")
    first_line = raw.lstrip(b"\r\n").split(b"\n", 1)[0]
    if not re.match(rb"^[!-9;-~]+:", first_line) and not first_line.startswith(b"From "):
        raise InboundMailInvalid("Not a MIME message: it does not start with a header field.")
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        defects = [type(defect).__name__ for part in message.walk() for defect in part.defects]
        sender = str(message.get("From", "") or "").strip()
    except Exception as exc:  # the parser's errors on hostile input are of many types
        raise InboundMailInvalid(f"The message cannot be parsed: {exc.__class__.__name__}.") from None
    if "MissingHeaderBodySeparatorDefect" in defects and not sender:
        raise InboundMailInvalid("Not a MIME message: no header block.")
    if not sender:
        raise InboundMailInvalid("The message has no From header.")
    for defect in ("NoBoundaryInMultipartDefect", "StartBoundaryNotFoundDefect"):
        if defect in defects:
            raise InboundMailInvalid(f"Malformed multipart message ({defect}).")
    return message


def _storable(text: str) -> str:
    """Text PostgreSQL can store: undecodable bytes (surrogate escapes) become "?", NULs go."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _header(message: EmailMessage, name: str) -> str:
    """A header's values as storable text; a header the parser cannot read counts as absent."""
    try:
        values = message.get_all(name) or []
        text = " ".join(str(value) for value in values)
    except Exception:  # the default policy's header parsers raise many types on hostile input
        return ""
    return _storable(text)


def _message_ids(text: str) -> list[str]:
    return [f"<{mid}>" for mid in MESSAGE_ID.findall(text or "")]


def _parts(message: EmailMessage, content_type: str) -> list:
    return [part for part in message.walk() if part.get_content_type() == content_type]


def _text_of(part) -> str:
    try:
        content = part.get_content()
    except Exception:  # an unknown charset or a broken transfer encoding: read what we can
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
    return content if isinstance(content, str) else ""


def _dsn_fields(message: EmailMessage) -> list[dict[str, str]]:
    """The per-recipient field groups of a message/delivery-status part (RFC 3464 §2.3)."""
    groups: list[dict[str, str]] = []
    for part in _parts(message, "message/delivery-status"):
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        if not blocks:  # some MTAs send it as one text block: read its field lines
            text = _text_of(part)
            blocks = [email.message_from_string(chunk) for chunk in re.split(r"\r?\n\r?\n", text) if chunk.strip()]
        for block in blocks:
            fields = {key.lower(): _storable(str(value)).strip() for key, value in block.items()}
            if "action" in fields or "status" in fields:
                groups.append(fields)
    return groups


def _original_headers(message: EmailMessage) -> EmailMessage | None:
    """The message a bounce reports on: its message/rfc822 or text/rfc822-headers part."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return cast(EmailMessage, payload[0])  # parsed with policy.default: its parts are EmailMessages
        if kind == "text/rfc822-headers":
            return email.message_from_string(_text_of(part), policy=email.policy.default)
    return None


# --- classification ----------------------------------------------------------------------------


def mail_classify(message: EmailMessage) -> Classification:
    """Bounce, automatic reply or human reply, with the marks that decided it."""
    content_type = message.get_content_type()
    # cast: policy.default decodes RFC 2231 parameters, so a parameter is a str (compat32's tuple is not here).
    report_type = (
        (cast(str | None, message.get_param("report-type")) or "").lower() if content_type == "multipart/report" else ""
    )
    if report_type == "delivery-status" or _parts(message, "message/delivery-status"):
        groups = _dsn_fields(message)
        failed = [g for g in groups if g.get("action", "failed").lower() in DSN_FAILED_ACTIONS]
        if groups and not failed:
            actions = sorted({g.get("action", "").lower() for g in groups})
            return Classification("ignored", [f"delivery-status report, action {', '.join(actions)}"])
        status = (next((g.get("status", "") for g in failed if g.get("status")), "").split() or [""])[0][:16]
        return Classification("bounce", ["delivery-status report"], hard=not status.startswith("4"), status=status)
    sender = next((address for _, address in getaddresses([_header(message, "From")]) if address), "")
    if sender.split("@")[0].lower() in BOUNCE_SENDERS:
        # A bounce in prose (no RFC 3464 report): no status to trust, so nothing is suppressed.
        return Classification("bounce", [f"sender {sender[:80]} without a delivery-status report"], hard=False)

    reasons = []
    auto_submitted = _header(message, "Auto-Submitted").strip().lower()
    if auto_submitted and auto_submitted.split(";")[0].strip() != "no":
        reasons.append(f"Auto-Submitted: {auto_submitted[:40]}")
    for name in AUTO_HEADERS:
        if _header(message, name).strip():
            reasons.append(name)
    precedence = _header(message, "Precedence").strip().lower()
    if precedence in AUTO_PRECEDENCE:
        reasons.append(f"Precedence: {precedence}")
    subject = _header(message, "Subject")
    if AUTO_SUBJECT.match(subject):
        reasons.append("subject")
    if reasons:
        return Classification(EventType.AUTO_REPLY, reasons)
    return Classification(EventType.REPLY, [])


# --- matching ------------------------------------------------------------------------------------


def _referenced_ids(message: EmailMessage, classification: Classification) -> list[str]:
    ids = []
    if classification.kind == "bounce":
        original = _original_headers(message)
        if original is not None:
            ids += _message_ids(_header(original, "Message-ID"))
    ids += _message_ids(_header(message, "In-Reply-To"))
    ids += list(reversed(_message_ids(_header(message, "References"))))  # newest last in the header
    return list(dict.fromkeys(ids))[:MAX_CANDIDATES]


def _candidate_tokens(message: EmailMessage) -> list[str]:
    tokens = []
    for name in ADDRESS_HEADERS:
        for _, address in getaddresses([_header(message, name)]):
            match = PLUS_ADDRESS.match(address)
            if match:
                tokens.append(match.group(1))
    tracking_url = re.compile(re.escape(settings.SITE_URL) + rf"/t/(?:o|c|u)/({TOKEN})")
    for part in message.walk():
        if part.get_content_maintype() == "text":
            tokens += tracking_url.findall(_text_of(part))
    return list(dict.fromkeys(tokens))[:MAX_CANDIDATES]


def mail_match(
    *, message_ids: list[str], tokens: list[str], organization_id: int | None = None
) -> tuple[Recipient, str] | None:
    """The recipient a message answers (or bounces), and how it was found: by the Message-IDs it
    refers to, else by a tracking token; only among `organization_id`'s recipients when given
    (mail read from that organization's mailbox)."""
    found = selectors.recipient_for_message_ids(message_ids=message_ids, organization_id=organization_id)
    if found is not None:
        return found[0], f"message_id {found[1]}"
    if tokens:
        recipients = Recipient.objects.select_related("campaign").filter(token__in=tokens)
        if organization_id is not None:
            recipients = recipients.filter(campaign__organization_id=organization_id)
        by_token = {r.token: r for r in recipients}
        for token in tokens:
            if token in by_token:
                return by_token[token], "token"
    return None


# --- recording ----------------------------------------------------------------------------------


def _occurred_at(message: EmailMessage) -> datetime | None:
    try:
        value = parsedate_to_datetime(_header(message, "Date"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return value if value is not None and value.tzinfo is not None else None


EVENT_TYPES = {EventType.REPLY: EventType.REPLY, EventType.AUTO_REPLY: EventType.AUTO_REPLY, "bounce": EventType.BOUNCE}


@dataclass
class ReadMail:
    """What the recording needs from a message, read before any database work."""

    classification: Classification
    own_ids: list[str]
    message_ids: list[str]
    tokens: list[str]
    occurred_at: datetime | None
    sender: str
    subject: str


def mail_read(raw: bytes) -> ReadMail:
    """Parse and read a message. Whatever in it trips the standard library's parsers (they raise
    many types on hostile input) is InboundMailInvalid, a 400, never a 500."""
    message = mail_parse(raw)
    try:
        classification = mail_classify(message)
        return ReadMail(
            classification=classification,
            own_ids=_message_ids(_header(message, "Message-ID")),
            message_ids=_referenced_ids(message, classification),
            tokens=_candidate_tokens(message),
            occurred_at=_occurred_at(message),
            sender=_header(message, "From")[:254],
            subject=_header(message, "Subject")[:200],
        )
    except Exception as exc:
        raise InboundMailInvalid(f"The message cannot be read: {exc.__class__.__name__}.") from None


def inbound_mail_record(*, raw: bytes, via: str, account: str = "", organization_id: int | None = None) -> dict:
    """Parse, classify, match and record one message; with `organization_id` (an organization's
    own mailbox), only that organization's recipients can match. Returns what happened, e.g.
    {"recorded": True, "type": "reply", "event_id": …, "matched_by": "message_id <…>"} or
    {"recorded": False, "reason": "unmatched"}. Raises InboundMailInvalid for what is no message."""
    mail = mail_read(raw)
    classification, own_ids = mail.classification, mail.own_ids
    if classification.kind == "ignored":
        return {"recorded": False, "reason": "ignored", "classification": classification.reasons}
    if own_ids and selectors.recipient_for_message_ids(message_ids=own_ids[:1]) is not None:
        # Our own sent message (a BCC or a copy filed into the polled folder), not an answer to it.
        return {"recorded": False, "reason": "own message"}
    found = mail_match(message_ids=mail.message_ids, tokens=mail.tokens, organization_id=organization_id)
    if found is None:
        return {"recorded": False, "reason": "unmatched", "type": str(classification.kind)}
    recipient, matched_by = found
    event_type = EVENT_TYPES[classification.kind]
    event_key = own_ids[0] if own_ids else "sha256:" + hashlib.sha256(raw).hexdigest()
    occurred_at, note = event_time_accept(mail.occurred_at)
    payload = {
        "via": via,
        "account": account,
        "message_id": own_ids[0] if own_ids else "",
        "from": mail.sender,
        "subject": mail.subject,
        "matched_by": matched_by,
        "classification": classification.reasons,
    }
    if event_type == EventType.BOUNCE:
        payload.update(bounce_type="hard" if classification.hard else "soft", status=classification.status)
    event = services.event_record(
        type=event_type,
        recipient_id=recipient.pk,
        occurred_at=occurred_at,
        source=SOURCE,
        provider_event_id=f"mail:{event_key}"[:255],
        payload=payload,
        with_effects=classification.hard,
    )
    if event is None:
        return {"recorded": False, "reason": "duplicate message", "type": str(event_type)}
    answer = {
        "recorded": True,
        "type": str(event_type),
        "event_id": event.pk,
        "recipient_id": recipient.pk,
        "matched_by": matched_by,
        "occurred_at": occurred_at,
    }
    if note:
        answer["notes"] = [note]
    return answer
