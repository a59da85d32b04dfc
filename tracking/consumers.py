"""The live WebSocket (/ws/live/): campaign.progress and queue.state, one message format.

A member authenticates with the admin's session (a browser; its Origin must be this site's, so
another site cannot ride the cookie) or `Authorization: Token <key>` (any other client), then
subscribes:

    {"action": "subscribe", "campaign": "<id>"}          one campaign of theirs
    {"action": "subscribe", "organization": "<slug>"}    every campaign of one of their organizations
    {"action": "subscribe", "organization": "*"}         every campaign of all their organizations
    {"action": "subscribe", "platform": true}            every campaign (staff only: the admin's view)
    {"action": "unsubscribe", ...}                       the same keys

Each subscription answers `subscribed` with the current campaign.progress of what it covers (the
campaign, or the organization's running, paused and recently changed ones), then one message per
change. queue.state comes to everyone on connect and on every change of the latch or a breaker.
Isolation is the API's: a campaign is found through campaign_get_for_user, an organization
through organizations_for_user, and every message is checked again against the user's
organizations (re-read every MEMBERSHIP_RECHECK_SECONDS), so a removed member stops receiving.
"""

import time
from datetime import timedelta
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db.models import Q
from django.http import Http404
from django.http.request import validate_host
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.selectors import campaign_get_for_user, organizations_for_user
from campaigns.states import CampaignStatus

from . import live

MEMBERSHIP_RECHECK_SECONDS = 10
SNAPSHOT_LIMIT = 100
RECENT = timedelta(days=1)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin1")
    return ""


@database_sync_to_async
def _token_user(key: str):
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else AnonymousUser()


class LiveAuthMiddleware:
    """Token in the Authorization header, or else the session cookie with a same-site Origin.
    A cookie is sent by the browser whatever page opened the socket, so a session is honoured
    only when the Origin header names a host of ours (ALLOWED_HOSTS); a token is not ambient,
    so a token client needs no Origin."""

    def __init__(self, inner):
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        authorization = _header(scope, b"authorization")
        if authorization.lower().startswith("token "):
            user = await _token_user(authorization[6:].strip())
            return await self.inner({**scope, "user": user, "auth": "token"}, receive, send)
        if _session_cookie_present(scope) and not _origin_allowed(_header(scope, b"origin")):
            return await _refuse(send, receive)
        return await self.session_stack({**scope, "auth": "session"}, receive, send)


def _session_cookie_present(scope) -> bool:
    cookie = SimpleCookie()
    try:
        cookie.load(_header(scope, b"cookie"))
    except Exception:
        return False
    return settings.SESSION_COOKIE_NAME in cookie


def _origin_allowed(origin: str) -> bool:
    if not origin:
        return False
    host = urlsplit(origin).hostname or ""
    trusted = {urlsplit(o).hostname for o in settings.CSRF_TRUSTED_ORIGINS}
    return bool(host) and (validate_host(host, settings.ALLOWED_HOSTS) or host in trusted)


async def _refuse(send, receive) -> None:
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN_ORIGIN})


# --- database reads, each in a thread ----------------------------------------------------------


@database_sync_to_async
def _organizations(user) -> dict[str, int]:
    return dict(organizations_for_user(user=user).values_list("slug", "pk"))


@database_sync_to_async
def _is_staff(user) -> bool:
    return get_user_model().objects.filter(pk=user.pk, is_active=True, is_staff=True).exists()


@database_sync_to_async
def _campaign_snapshot(user, campaign_id) -> tuple[Campaign, dict] | None:
    try:
        campaign = campaign_get_for_user(user=user, campaign_id=campaign_id)
    except Http404:
        return None
    return campaign, live.campaign_progress_message(campaign=campaign)


@database_sync_to_async
def _campaigns_snapshot(organization_ids: list | None) -> list[dict]:
    """Running and paused campaigns, and those changed in the last day, newest first."""
    since = timezone.now() - RECENT
    campaigns = Campaign.objects.alive().filter(
        Q(status__in=(CampaignStatus.RUNNING, CampaignStatus.PAUSED)) | Q(updated_at__gte=since)
    )
    if organization_ids is not None:
        campaigns = campaigns.filter(organization_id__in=organization_ids)
    return live.campaigns_progress_messages(campaigns.order_by("-updated_at"), limit=SNAPSHOT_LIMIT)


@database_sync_to_async
def _queue_message() -> dict:
    return live.queue_state_message()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.subscriptions: set[str] = set()
        self.organization_ids: set[int] = set((await _organizations(user)).values())
        self.staff = await _is_staff(user)
        self.checked_at = time.monotonic()
        await self.accept()
        await self.channel_layer.group_add(live.QUEUE_GROUP, self.channel_name)
        await self.send_json(await _queue_message())

    async def disconnect(self, code):
        for group in getattr(self, "subscriptions", set()) | {live.QUEUE_GROUP}:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _error(self, detail: str) -> None:
        await self.send_json(live.envelope("error", {"detail": detail}))

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict) or content.get("action") not in ("subscribe", "unsubscribe"):
            await self._error(
                'Send {"action": "subscribe" | "unsubscribe", "campaign" | "organization" | "platform": …}.'
            )
            return
        subscribe = content["action"] == "subscribe"
        if "campaign" in content:
            await self._campaign(content["campaign"], subscribe)
        elif "organization" in content:
            await self._organization(content["organization"], subscribe)
        elif content.get("platform") is True:
            await self._platform(subscribe)
        else:
            await self._error("Name a campaign, an organization (a slug, or *) or the platform.")

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)
        except ValueError:  # not JSON
            await self._error("Messages are JSON objects.")

    async def _join(self, group: str, subscribe: bool) -> None:
        if subscribe:
            await self.channel_layer.group_add(group, self.channel_name)
            self.subscriptions.add(group)
        else:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.subscriptions.discard(group)

    async def _campaign(self, campaign_id, subscribe: bool) -> None:
        found = await _campaign_snapshot(self.user, campaign_id) if isinstance(campaign_id, str) else None
        if found is None:
            await self._error("No campaign with that id.")  # unknown and another organization's alike
            return
        campaign, message = found
        await self._join(live.campaign_group(campaign.pk), subscribe)
        await self.send_json(
            live.envelope("subscribed" if subscribe else "unsubscribed", {"campaign": str(campaign.pk)})
        )
        if subscribe:
            await self.send_json(message)

    async def _organization(self, slug, subscribe: bool) -> None:
        organizations = await _organizations(self.user)
        if slug == "*":
            chosen = list(organizations.values())
        elif isinstance(slug, str) and slug in organizations:
            chosen = [organizations[slug]]
        else:
            await self._error("You have no organization with that slug.")
            return
        for organization_id in chosen:
            await self._join(live.organization_group(organization_id), subscribe)
        await self.send_json(live.envelope("subscribed" if subscribe else "unsubscribed", {"organization": slug}))
        if subscribe:
            for message in await _campaigns_snapshot(chosen):
                await self.send_json(message)

    async def _platform(self, subscribe: bool) -> None:
        if not await _is_staff(self.user):
            await self._error("The platform's view is for staff.")
            return
        self.staff = True
        await self._join(live.PLATFORM_GROUP, subscribe)
        await self.send_json(live.envelope("subscribed" if subscribe else "unsubscribed", {"platform": True}))
        if subscribe:
            for message in await _campaigns_snapshot(None):
                await self.send_json(message)

    async def _still_allowed(self, organization_id) -> bool:
        if time.monotonic() - self.checked_at > MEMBERSHIP_RECHECK_SECONDS:
            self.organization_ids = set((await _organizations(self.user)).values())
            self.staff = await _is_staff(self.user)
            self.checked_at = time.monotonic()
            if not self.staff and live.PLATFORM_GROUP in self.subscriptions:
                await self._join(live.PLATFORM_GROUP, False)
        return (
            organization_id is None
            or organization_id in self.organization_ids
            or (self.staff and live.PLATFORM_GROUP in self.subscriptions)
        )

    async def live_message(self, event):
        """A message from the publisher: forwarded if the user may still see it."""
        if await self._still_allowed(event.get("organization")):
            await self.send_json(event["message"])
