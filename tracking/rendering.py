"""A campaign's templates turned into one message: Django templates with the lead's fields, the
open pixel, click URLs in place of every http(s) link, the unsubscribe headers and a Message-ID."""

import binascii
import html
import re
import secrets
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate, make_msgid
from typing import Protocol
from urllib.parse import quote

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.html import escape, linebreaks, strip_tags

from campaigns.models import Campaign, Lead
from campaigns.templating import SAMPLE_LEAD, Budget, template_compile, template_render

from .mailboxes import message_sender
from .models import Link, Recipient

__all__ = ["SAMPLE_LEAD", "render_content"]  # SAMPLE_LEAD: the template language's sample lead, for test sends

LEAD_FIELDS = ("email", "first_name", "last_name", "title", "company", "company_domain", "linkedin_url", "phone")

_HTML_TAG = re.compile(r"<(html|body|p|div|a|br|table|span|strong|em|b|i|ul|ol|li|h[1-6]|img)\b", re.IGNORECASE)
_BARE_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_HREF = re.compile(r"""(href\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
_ANCHOR = re.compile(r"""<a\s[^>]*href\s*=\s*(["'])([^"']+)\1[^>]*>(.*?)</a>""", re.IGNORECASE | re.DOTALL)
_TRAILING_PUNCTUATION = ".,;:!?)]}"


def lead_context(lead: Lead) -> dict:
    context = {field: getattr(lead, field) for field in LEAD_FIELDS}
    context["full_name"] = " ".join(part for part in (lead.first_name, lead.last_name) if part)
    context["enrichment"] = lead.enrichment or {}
    context["personalization"] = (lead.enrichment or {}).get("line", "")  # written by enrich_lead
    return context


def recipient_context(recipient: Recipient) -> dict:
    if recipient.lead is not None:
        return lead_context(recipient.lead)
    return {**dict.fromkeys(SAMPLE_LEAD, ""), "email": recipient.email, "enrichment": {}}


def site_url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


class LinkRegistry:
    """A campaign's Link ids, registered the first time a URL is rendered and cached for a batch."""

    def __init__(self, campaign_id) -> None:
        self.campaign_id = campaign_id
        self.ids: dict[str, int] = {}

    def ids_for(self, urls: set[str]) -> dict[str, int]:
        missing = [url for url in urls if url not in self.ids]
        if missing:
            Link.objects.bulk_create(
                [Link(campaign_id=self.campaign_id, url=url) for url in missing], ignore_conflicts=True
            )
            self.ids.update(Link.objects.filter(campaign_id=self.campaign_id, url__in=missing).values_list("url", "id"))
        return self.ids


@dataclass
class Content:
    subject: str
    text: str
    html: str


class MessageTemplates(Protocol):
    """What render_content reads: a campaign, or a step's or variant's templates
    (tracking.sequences.Templates)."""

    @property
    def subject_template(self) -> str: ...

    @property
    def body_template(self) -> str: ...


def _split_trailing(url: str) -> tuple[str, str]:
    """`see https://x.com/offer.` links to https://x.com/offer, not to `offer.`."""
    stripped = url.rstrip(_TRAILING_PUNCTUATION)
    return stripped, url[len(stripped) :]


def render_content(*, campaign: MessageTemplates, context: dict) -> Content:
    """Subject and both bodies. Variables are escaped in the HTML part (autoescape on) and kept as
    given in the subject and the text part. A body without HTML tags is plain text: its HTML part
    is the escaped text with paragraphs and clickable links.

    Rendered in campaigns.templating's language and within one message's bounds (size and work,
    shared by subject and body): a template over them raises ValidationError naming the field,
    which a send turns into that job's failure."""
    budget = Budget.for_message()
    subject_template = template_compile(campaign.subject_template, field="subject_template")
    subject = template_render(subject_template, context, field="subject_template", autoescape=False, budget=budget)
    subject = " ".join(subject.split())  # a newline from a lead's field must not become a header break
    body = template_compile(campaign.body_template, field="body_template")
    if _HTML_TAG.search(campaign.body_template):
        html_body = template_render(body, context, field="body_template", autoescape=True, budget=budget)
        text = html.unescape(strip_tags(_ANCHOR.sub(lambda m: f"{m.group(3)} ({m.group(2)})", html_body)))
    else:
        text = template_render(body, context, field="body_template", autoescape=False, budget=budget)
        html_body = linebreaks(_BARE_URL.sub(_anchor_for_bare_url, escape(text)))
    return Content(subject=subject, text=text.strip(), html=html_body)


def _anchor_for_bare_url(match: re.Match) -> str:
    url, trailing = _split_trailing(match.group(0))
    return f'<a href="{url}">{url}</a>{trailing}'


def add_tracking(content: Content, *, recipient: Recipient, links: LinkRegistry, postal_address: str = "") -> Content:
    """Every http(s) link becomes {SITE_URL}/t/c/<token>/<link id>; the open pixel is appended.
    Our own tracking URLs (an unsubscribe link written in the template) are left alone. The
    footer carries the unsubscribe link and the organization's postal address (CAN-SPAM)."""
    own_prefix = site_url("/t/")
    hrefs = {html.unescape(m.group(3)) for m in _HREF.finditer(content.html)}
    bare = {_split_trailing(m.group(0))[0] for m in _BARE_URL.finditer(content.text)}
    ids = links.ids_for({url for url in hrefs | bare if not url.startswith(own_prefix)})

    def click_url(url: str) -> str:
        if url.startswith(own_prefix) or url not in ids:
            return url
        return site_url(f"/t/c/{recipient.token}/{ids[url]}")

    def rewrite_href(match: re.Match) -> str:
        return f"{match.group(1)}{match.group(2)}{escape(click_url(html.unescape(match.group(3))))}{match.group(2)}"

    def rewrite_bare(match: re.Match) -> str:
        url, trailing = _split_trailing(match.group(0))
        return click_url(url) + trailing

    unsubscribe = site_url(f"/t/u/{recipient.token}")
    pixel = f'<img src="{site_url(f"/t/o/{recipient.token}.gif")}" width="1" height="1" alt="" style="display:none">'
    address = " ".join(postal_address.split())
    footer = (
        f'<p style="font-size:12px;color:#888">{escape(address) + "<br>" if address else ""}'
        f'<a href="{unsubscribe}">Unsubscribe</a></p>'
    )
    html_body = _HREF.sub(rewrite_href, content.html)
    if "</body>" in html_body.lower():
        cut = html_body.lower().rindex("</body>")
        html_body = html_body[:cut] + footer + pixel + html_body[cut:]
    else:
        html_body = html_body + footer + pixel
    text = _BARE_URL.sub(rewrite_bare, content.text) + "\n\n--\n" + (f"{address}\n" if address else "")
    text += f"Unsubscribe: {unsubscribe}\n"
    return Content(subject=content.subject, text=text, html=html_body)


@dataclass
class OutgoingMessage:
    """One message ready to hand over: its envelope, its headers and its two bodies.

    `as_bytes` writes the MIME text itself, for the SMTP hand-over of a send batch (Python's
    email package spends most of a message's cost folding headers that need no folding);
    `as_email` gives Django's EmailMessage, for the other email backends (console, file, locmem).
    Both carry the same headers and bodies."""

    from_header: str  # the From header: an address, or "Name <address>"
    envelope_from: str
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]  # Message-ID, Reply-To, List-Unsubscribe…

    @property
    def message_id(self) -> str:
        return self.headers["Message-ID"]

    def as_email(self, connection=None) -> EmailMultiAlternatives:
        headers = {name: value for name, value in self.headers.items() if name != "Reply-To"}
        reply_to = self.headers.get("Reply-To")
        message = EmailMultiAlternatives(
            subject=self.subject,
            body=self.text,
            from_email=self.from_header,
            to=[self.to],
            reply_to=[reply_to] if reply_to else None,
            headers=headers,
            connection=connection,
        )
        message.attach_alternative(self.html, "text/html")
        return message

    def as_bytes(self) -> bytes:
        boundary = f"=_{secrets.token_hex(16)}"
        lines = [
            f"From: {_header(self.from_header)}",
            f"To: {_header(self.to)}",
            f"Subject: {_header(self.subject)}",
            f"Date: {formatdate(localtime=False)}",
            *(f"{name}: {_header(value)}" for name, value in self.headers.items()),
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        separator = f"--{boundary}\r\n".encode("ascii")
        return b"".join(
            (
                head,
                separator,
                _part("text/plain", self.text),
                separator,
                _part("text/html", self.html),
                f"--{boundary}--\r\n".encode("ascii"),
            )
        )


def _header(value: str) -> str:
    """A header value as it travels: short ASCII as it is, anything else as RFC 2047 words."""
    if value.isascii() and len(value) <= 900 and "\r" not in value and "\n" not in value:
        return value
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _part(content_type: str, body: str) -> bytes:
    """One body part in UTF-8, quoted-printable (7-bit safe, lines within the limit)."""
    encoded = binascii.b2a_qp(body.replace("\r\n", "\n").encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    head = f'Content-Type: {content_type}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return head.encode("ascii") + encoded + b"\r\n"


def reply_address(recipient: Recipient) -> str:
    """INBOUND_REPLY_ADDRESS plus-addressed with the recipient's token (tracking.inbound reads it
    back from a reply's To)."""
    local, _, domain = settings.INBOUND_REPLY_ADDRESS.partition("@")
    return f"{local}+{recipient.token}@{domain}"


def build_message(
    *, campaign: Campaign, content: Content, to: str, recipient: Recipient | None = None, mailbox=None
) -> OutgoingMessage:
    """The message for `to`. With a recipient, it carries the one-click unsubscribe headers
    (RFC 8058) pointing at that recipient's token."""
    # The recipient's mailbox (every step to it goes from there), else the one given (a test
    # send's), else the campaign's sender.
    if recipient is not None and recipient.mailbox_id:
        mailbox = recipient.mailbox
    from_name, from_email = message_sender(campaign=campaign, mailbox=mailbox)
    headers = {"Message-ID": make_msgid(domain=from_email.rpartition("@")[2] or "localhost")}
    if campaign.reply_to:
        headers["Reply-To"] = campaign.reply_to
    elif recipient is not None and settings.INBOUND_REPLY_ADDRESS:
        headers["Reply-To"] = reply_address(recipient)
    if recipient is not None:
        mailto = f"mailto:{from_email}?subject={quote('unsubscribe ' + recipient.token)}"
        headers["List-Unsubscribe"] = f"<{site_url(f'/t/u/{recipient.token}')}>, <{mailto}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return OutgoingMessage(
        from_header=formataddr((from_name, from_email)) if from_name else from_email,
        envelope_from=from_email,
        to=to,
        subject=content.subject,
        text=content.text,
        html=content.html,
        headers=headers,
    )
