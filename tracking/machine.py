"""Telling machine opens and clicks (prefetchers, image proxies, link scanners) from people.

Machine events are kept and flagged, never dropped: stats show human and raw figures, and a
list that turns out too eager can be corrected later from the stored user agent."""

import re
from datetime import datetime

from django.http import HttpRequest

# A click this soon after the message left us is a link scanner following every URL on arrival.
CLICK_MACHINE_WINDOW_SECONDS = 5

# Matched against the lower-cased user agent: the same as re.IGNORECASE (the patterns are ASCII and
# use no upper-case escapes) and five times faster, which the pixel's throughput notices.
MACHINE_USER_AGENTS = re.compile(
    "|".join(
        [
            r"GoogleImageProxy",
            r"ggpht\.com",
            r"YahooMailProxy",
            r"Microsoft Office Existence Discovery",
            r"ms-office",
            r"Outlook.*Scanner",
            r"SafeLinks",
            r"Barracuda",
            r"Mimecast",
            r"Proofpoint",
            r"Symantec",
            r"MessageLabs",
            r"Forcepoint",
            r"IronPort",
            r"Trend ?Micro",
            r"BingPreview",
            r"bot\b",
            r"bot/",
            r"crawler",
            r"spider",
            r"HeadlessChrome",
            r"PhantomJS",
            r"facebookexternalhit",
            r"Slackbot",
            r"SkypeUriPreview",
            r"WhatsApp",
            r"^curl/",
            r"^Wget",
            r"python-requests",
            r"python-httpx",
            r"python-urllib",
            r"aiohttp",
            r"Go-http-client",
            r"okhttp",
            r"Java/",
            r"libwww-perl",
            r"Apache-HttpClient",
        ]
    ).lower(),
)


def is_machine_request(request: HttpRequest) -> bool:
    """HEAD requests, declared prefetches, known proxy / scanner / script user agents, and no user
    agent at all (every real mail client and browser sends one)."""
    if request.method == "HEAD":
        return True
    # META rather than request.headers, which builds a dict of every header: the pixel notices.
    meta = request.META
    purpose = (meta.get("HTTP_PURPOSE", "") + " " + meta.get("HTTP_SEC_PURPOSE", "")).lower()
    if "prefetch" in purpose or "preview" in purpose:
        return True
    user_agent = meta.get("HTTP_USER_AGENT", "").strip()
    return not user_agent or bool(MACHINE_USER_AGENTS.search(user_agent.lower()))


def is_machine_click(request: HttpRequest, *, sent_at: datetime | None, now: datetime) -> bool:
    if is_machine_request(request):
        return True
    return sent_at is not None and (now - sent_at).total_seconds() < CLICK_MACHINE_WINDOW_SECONDS
