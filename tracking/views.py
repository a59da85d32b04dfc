"""The public tracking URLs mail clients hit: open pixel, click redirect, one-click unsubscribe.

No login and no CSRF token (mail clients have neither); the unguessable recipient token is the
only key, and a click can only lead to a URL the campaign itself registered.
"""

import base64
import logging
import re
from typing import Any

from django.db import DatabaseError
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from redis import RedisError

from campaigns_project.net import client_ip

from . import services
from .machine import is_machine_click, is_machine_request
from .models import Link, Recipient
from .states import EventType

logger = logging.getLogger(__name__)

# The classic 43-byte transparent 1x1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _client_ip(request) -> str | None:
    # X-Forwarded-For only as far as NUM_PROXIES trusted proxies set it (campaigns_project.net).
    return client_ip(request)


def _user_agent(request) -> str:
    return request.META.get("HTTP_USER_AGENT", "")[:512]


@require_http_methods(["GET", "HEAD"])
def open_pixel(request, token: str):
    """Always the GIF, fast and uncached: for unknown tokens (nothing recorded) and even when
    recording fails (logged), since a broken image in someone's inbox helps nobody.

    The open is buffered in Redis (one RPUSH; tracking.tasks.drain_opens writes it within ~2 s).
    If Redis fails, it is written to the database directly instead."""
    if _TOKEN.match(token):
        seen: dict[str, Any] = {
            "is_machine": is_machine_request(request),
            "user_agent": _user_agent(request),
            "ip": _client_ip(request),
        }
        try:
            services.open_buffer(token=token, **seen)
        except RedisError:
            logger.warning("Could not buffer an open in Redis; recording it directly.", exc_info=True)
            try:
                services.event_record_seen(type=EventType.OPEN, token=token, **seen)
            except DatabaseError:
                logger.exception("Could not record an open for token %s…", token[:6])
    response = HttpResponse(PIXEL_GIF, content_type="image/gif")
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0"
    response["Pragma"] = "no-cache"
    return response


@require_http_methods(["GET", "HEAD"])
def click(request, token: str, link_id: int):
    """Redirect to the stored URL of this link, only if it belongs to the recipient's campaign.
    The target never comes from the request: anything else is a 404."""
    if not _TOKEN.match(token):
        raise Http404("Unknown link.")
    row = (
        Link.objects.filter(pk=link_id, campaign__recipients__token=token)
        .values_list("url", "campaign__recipients__sent_at")
        .first()
    )
    if row is None or not row[0].lower().startswith(("http://", "https://")):
        raise Http404("Unknown link.")
    url, sent_at = row
    now = timezone.now()
    try:
        services.event_record_seen(
            type=EventType.CLICK,
            token=token,
            occurred_at=now,
            link_id=link_id,
            is_machine=is_machine_click(request, sent_at=sent_at, now=now),
            user_agent=_user_agent(request),
            ip=_client_ip(request),
        )
    except DatabaseError:
        logger.exception("Could not record a click for token %s…", token[:6])
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt  # RFC 8058 one-click: the mail client POSTs without any CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    """GET shows a confirmation page (a link scanner following the URL unsubscribes nobody);
    POST, from that page or from the mail client's one-click button, unsubscribes."""
    recipient = (
        Recipient.objects.select_related("campaign", "lead").filter(token=token).first()
        if _TOKEN.match(token)
        else None
    )
    if recipient is None:
        return render(request, "tracking/unsubscribe.html", {"unknown": True}, status=404)
    done = False
    if request.method == "POST":
        services.recipient_unsubscribe(token=token, user_agent=_user_agent(request), ip=_client_ip(request))
        done = True
    return render(
        request,
        "tracking/unsubscribe.html",
        {
            "recipient": recipient,
            "first_name": recipient.lead.first_name if recipient.lead else "",
            "sender": recipient.campaign.from_name or recipient.campaign.from_email,
            "done": done or recipient.status == "unsubscribed",
        },
    )
