"""Fixtures of the tracking tests: a real SMTP server on loopback (aiosmtpd) that records what it
receives and can refuse chosen recipients, an smtp campaign in its outreach phase, and helpers
to read tracking URLs out of the messages as received."""

import email
import email.policy
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pytest
from aiosmtpd.controller import Controller

from campaigns.models import Campaign
from tests.factories import CampaignFactory, LeadFactory

SITE_URL = "https://track.example.test"


@dataclass
class SinkHandler:
    """Accepts everything except the addresses listed in `refuse` (address -> SMTP reply)."""

    messages: list = field(default_factory=list)
    refuse: dict = field(default_factory=dict)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return self.refuse[address.lower()]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append({"to": list(envelope.rcpt_tos), "message": parsed})
        return "250 Message accepted for delivery"


@dataclass
class Sink:
    handler: SinkHandler
    port: int

    @property
    def messages(self) -> list:
        return self.handler.messages

    def to(self, address: str) -> list:
        return [m["message"] for m in self.messages if address in m["to"]]

    def refuse(self, address: str, reply: str) -> None:
        self.handler.refuse[address.lower()] = reply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_sink(settings):
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 5
    try:
        yield Sink(handler, port)
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def _site_url(settings):
    settings.SITE_URL = SITE_URL


@pytest.fixture
def campaign(org) -> Campaign:
    """Alice's smtp campaign, running its outreach phase, fast enough for tests."""
    return CampaignFactory(
        organization=org,
        name="Spring outreach",
        status="running",
        phase="outreach",
        channel="smtp",
        from_name="Alice at Acme",
        from_email="alice@acme.example",
        reply_to="replies@acme.example",
        subject_template="Hello {{ first_name }}",
        body_template="Hi {{ first_name }}, see https://example.com/offer?a=1&b=2 and https://example.com/pricing.",
        send_rate_per_minute=60_000,
    )


@pytest.fixture
def other_campaign(other_org) -> Campaign:
    return CampaignFactory(organization=other_org, name="Globex outreach", status="running", phase="outreach")


@pytest.fixture
def verified_leads(campaign):
    return [
        LeadFactory(campaign=campaign, email=f"person{i}@example.org", first_name=f"Person{i}", email_status="valid")
        for i in range(3)
    ]


def urls_in(text: str) -> list[str]:
    return re.findall(r"https?://[^\s<>\"')]+", text)


def path_of(url: str) -> str:
    assert url.startswith(SITE_URL), url
    return urlparse(url).path


def parts(message) -> tuple[str, str]:
    """The text and HTML bodies of a received message."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html
