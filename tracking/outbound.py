"""Outgoing webhooks: emit events into the outbox, deliver them signed, retry, give up, disable.

Emitting (`event_emit`, `events_emit`) writes a WebhookEvent and one WebhookDelivery per
subscribed endpoint in the caller's transaction, and wakes the webhooks queue after commit. An
event nobody subscribed to costs nothing but a dictionary lookup (the subscriptions are cached
per process for OUTGOING_WEBHOOK_SUBSCRIPTIONS_TTL seconds).

Delivering (`webhooks_deliver_due`, the task tracking.tasks.deliver_webhooks on the webhooks
queue) claims due deliveries with SKIP LOCKED and POSTs each, signed as Standard Webhooks does
(docs/flows/outgoing-webhooks.md). A 2xx is delivered. Anything else puts the endpoint in backoff
(base · 2^(failures-1), capped), and every pending delivery of that endpoint waits for it, so a
dead endpoint is probed once per backoff, not once per event. A delivery is retried until its
retry_until (OUTGOING_WEBHOOK_RETRY_FOR_SECONDS), then failed; an endpoint without a 2xx for
OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS is disabled and its organization's owners are emailed.

These are customers' URLs, not providers: nothing here goes through the guard or a breaker.
Requests go only to http(s) URLs whose every address is public (or in
OUTGOING_WEBHOOK_ALLOWED_NETWORKS), and connect to the address that was checked (no DNS
rebinding between the check and the connection), never following redirects.
"""

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from datetime import timedelta
from functools import lru_cache
from typing import cast
from urllib.parse import urlsplit

import httpx
import redis
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Membership
from campaigns_project.celery import app
from campaigns_project.errors import ApplicationError
from campaigns_project.redis import get_redis, rkey

from .models_outbound import (
    SUBSCRIBABLE_EVENT_TYPES,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
    new_webhook_secret,
)

logger = logging.getLogger(__name__)

DELIVER_TASK = "tracking.tasks.deliver_webhooks"
USER_AGENT = "campaign-backoffice-webhooks/1"
RESPONSE_KEPT_CHARS = 1000


# --- where requests may go (no server-side request forgery) ------------------------------------


class UnsafeTarget(Exception):
    """The URL may not be requested: not http(s), or an address this host must not reach."""


@lru_cache(maxsize=1)
def _own_addresses() -> frozenset:
    """This host's own addresses (as its name resolves locally), refused like private ones."""
    found = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            # cast: an IPv4 or IPv6 sockaddr starts with the address string (typeshed adds (int, bytes)).
            found.add(ipaddress.ip_address(cast(str, info[4][0]).split("%")[0]))
    except OSError:
        pass
    return frozenset(found)


def address_refusal(address: str) -> str:
    """Why this IP address may not be requested; empty when it may."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in settings.OUTGOING_WEBHOOK_ALLOWED_NETWORKS):
        return ""
    if ip in _own_addresses():
        return f"{ip} is an address of this host"
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return f"{ip} is a private, loopback, link-local or reserved address"
    return ""


def url_refusal(url: str) -> str:
    """Why this URL may not be an endpoint, from the URL alone (no DNS: the delivery resolves and
    checks every address again before each request); empty when it may."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"Not a valid URL: {exc}."
    if parts.scheme not in ("http", "https"):
        return "Only http and https URLs are allowed."
    if not parts.hostname:
        return "The URL has no host."
    if parts.username or parts.password:
        return "Credentials in the URL are not allowed; the signature authenticates us."
    if port == 0:
        return "Port 0 is not a port."
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.rstrip(".").lower() == "localhost" or parts.hostname.endswith(".localhost"):
            return _with_allowed(address_refusal("127.0.0.1"), "localhost")
        return ""
    return address_refusal(parts.hostname)


def _with_allowed(refusal: str, what: str) -> str:
    return f"{what}: {refusal}" if refusal else ""


def resolve_checked(host: str, port: int) -> str:
    """One address of `host` that may be requested; raises UnsafeTarget if any is refused (a name
    with one private address among public ones is refused: which one a client uses is chance)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeTarget(f"{host} does not resolve: {exc}") from exc
    # cast: an IPv4 or IPv6 sockaddr starts with the address string (typeshed adds (int, bytes)).
    addresses = list(dict.fromkeys(cast(str, info[4][0]) for info in infos))
    for address in addresses:
        refusal = address_refusal(address)
        if refusal:
            raise UnsafeTarget(f"{host} resolves to {refusal}")
    if not addresses:
        raise UnsafeTarget(f"{host} has no address")
    return addresses[0]


def post_checked(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> httpx.Response:
    """POST to `url`, connecting to an address checked by resolve_checked (the Host header and
    the TLS server name stay the URL's own). Redirects are answers, not followed; proxies from
    the environment are ignored (they would connect elsewhere)."""
    refusal = url_refusal(url)
    if refusal:
        raise UnsafeTarget(refusal)
    target = httpx.URL(url)
    port = target.port or (443 if target.scheme == "https" else 80)
    address = resolve_checked(target.host, port)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    host_header = target.host if target.port is None else f"{target.host}:{target.port}"
    if ":" in target.host and target.port is None:
        host_header = f"[{target.host}]"
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        return client.post(
            target.copy_with(host=address),
            content=body,
            headers={**headers, "Host": host_header},
            extensions=extensions,
        )


# --- signatures (Standard Webhooks) ------------------------------------------------------------


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def signature(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, the webhook-signature header."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def signed_request(endpoint: WebhookEndpoint, event: WebhookEvent) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event.body(), separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": str(event.id),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(endpoint.secret, message_id=str(event.id), timestamp=timestamp, body=body),
    }
    return body, headers


# --- emitting ----------------------------------------------------------------------------------

_subscriptions_cache: dict = {"checked": 0.0, "version": None, "map": None}


def _subscriptions_version_key() -> str:
    return rkey("webhooks", "subscriptions-version")


def subscriptions_invalidate() -> None:
    """An endpoint changed: this process reloads at once, the others when they next check the
    version (at most OUTGOING_WEBHOOK_SUBSCRIPTIONS_TTL seconds later)."""
    _subscriptions_cache["map"] = None

    def bump() -> None:
        with contextlib.suppress(redis.RedisError):
            get_redis().incr(_subscriptions_version_key())

    transaction.on_commit(bump)


def _subscriptions() -> dict[tuple[int, str], list]:
    """(organization id, event type) -> active endpoint ids. Reloaded from the database only when
    the version in Redis changed (an endpoint was created, changed, disabled or deleted), which
    is checked at most every TTL seconds: so the SQL an emitting path issues does not depend on
    the clock (the cascade's statement count is tested), and a Redis that cannot be read means a
    reload, never a stale answer kept for long."""
    ttl = settings.OUTGOING_WEBHOOK_SUBSCRIPTIONS_TTL
    cached = _subscriptions_cache["map"]
    now = time.monotonic()
    if cached is not None and now - _subscriptions_cache["checked"] < ttl:
        return cached
    try:
        version = get_redis().get(_subscriptions_version_key())
    except redis.RedisError:
        version = cached = None
    if cached is not None and version == _subscriptions_cache["version"]:
        _subscriptions_cache["checked"] = now
        return cached
    found: dict[tuple[int, str], list] = {}
    for pk, organization_id, types in WebhookEndpoint.objects.filter(is_active=True).values_list(
        "pk", "organization_id", "event_types"
    ):
        for event_type in types or ():
            found.setdefault((organization_id, event_type), []).append(pk)
    _subscriptions_cache.update(checked=now, version=version, map=found)
    return found


def subscribers(event_type: str, organization_id: int | None) -> list:
    """Active endpoints subscribed to `event_type`: the organization's, or every organization's
    for a platform event (organization_id None)."""
    subscriptions = _subscriptions()
    if organization_id is not None:
        return list(subscriptions.get((organization_id, event_type), ()))
    return [pk for (_, kind), pks in subscriptions.items() if kind == event_type for pk in pks]


def _retry_until():
    return timezone.now() + timedelta(seconds=settings.OUTGOING_WEBHOOK_RETRY_FOR_SECONDS)


def _endpoints_held(endpoint_ids) -> set:
    """Of the endpoints the subscriptions cache names, those that still exist and are active,
    held (FOR KEY SHARE on PostgreSQL) so none is deleted before the caller commits. The cache can
    be seconds behind a deletion; a delivery to a deleted endpoint would fail the caller's whole
    transaction at commit, and the caller may be the queue's pause cascade."""
    pk = WebhookEndpoint._meta.pk
    ids = sorted({pk.get_db_prep_value(value, connection) for value in endpoint_ids})
    if not ids:
        return set()
    qn = connection.ops.quote_name
    table, column, active = qn(WebhookEndpoint._meta.db_table), qn(pk.column or pk.attname), qn("is_active")
    hold = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    placeholders = ", ".join(["%s"] * len(ids))
    # Only names from _meta and placeholders are formatted in.
    sql = f"SELECT {column} FROM {table} WHERE {active} AND {column} IN ({placeholders}) ORDER BY {column}{hold}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, ids)
        return {pk.to_python(row[0]) for row in cursor.fetchall()}


def event_emit(*, type: str, data: dict, organization_id: int | None = None) -> WebhookEvent | None:
    """Record one event for the endpoints subscribed to it, in the caller's transaction; None
    (and nothing written) when nobody is."""
    endpoint_ids = subscribers(type, organization_id)
    if not endpoint_ids:
        return None
    with transaction.atomic():
        held = _endpoints_held(endpoint_ids)
        endpoint_ids = [pk for pk in endpoint_ids if pk in held]
        if not endpoint_ids:
            return None
        event = WebhookEvent.objects.create(organization_id=organization_id, type=type, data=data)
        until = _retry_until()
        WebhookDelivery.objects.bulk_create(
            [WebhookDelivery(event=event, endpoint_id=pk, retry_until=until) for pk in endpoint_ids]
        )
    wake_after_commit()
    return event


def events_emit(*, type: str, items: list[tuple[int, dict]]) -> int:
    """Many events of one type (a batch of sends, a drain of opens): (organization id, data) each.
    Two bulk INSERTs for the lot; returns how many deliveries were written."""
    wanted = [(organization_id, data, subscribers(type, organization_id)) for organization_id, data in items]
    wanted = [item for item in wanted if item[2]]
    if not wanted:
        return 0
    with transaction.atomic():
        held = _endpoints_held(pk for _, _, endpoint_ids in wanted for pk in endpoint_ids)
        wanted = [(org, data, [pk for pk in pks if pk in held]) for org, data, pks in wanted]
        wanted = [item for item in wanted if item[2]]
        if not wanted:
            return 0
        events = WebhookEvent.objects.bulk_create(
            [
                WebhookEvent(organization_id=organization_id, type=type, data=data)
                for organization_id, data, _ in wanted
            ],
            batch_size=1000,
        )
        until = _retry_until()
        deliveries = WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(event=event, endpoint_id=pk, retry_until=until)
                for event, (_, _, endpoint_ids) in zip(events, wanted, strict=True)
                for pk in endpoint_ids
            ],
            batch_size=1000,
        )
    wake_after_commit()
    return len(deliveries)


def wake() -> None:
    """One wake-up of the webhooks queue, at most one a second from emitters (the worker wakes
    itself while due deliveries are left, and beat every few seconds)."""
    try:
        if not get_redis().set(rkey("webhooks", "woken"), "1", nx=True, px=1000):
            return
    except redis.RedisError:
        pass  # cannot dedupe: send anyway, a spare wake-up finds nothing
    try:
        app.send_task(DELIVER_TASK, queue=settings.CELERY_QUEUE_NAMES["webhooks"], retry=False)
    except Exception:
        logger.warning("Could not wake the webhooks queue; beat will", exc_info=True)


def wake_after_commit() -> None:
    transaction.on_commit(wake)


# --- delivering --------------------------------------------------------------------------------


def _lease_seconds() -> float:
    return 2 * settings.OUTGOING_WEBHOOK_TIMEOUT_SECONDS + 30


def _due(now):
    return (
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .filter(endpoint__is_active=True)
        .filter(Q(endpoint__retry_at__isnull=True) | Q(endpoint__retry_at__lte=now))
    )


def deliveries_claim(*, limit: int) -> list[int]:
    """Take up to `limit` due deliveries for this worker until its lease runs out. SKIP LOCKED:
    concurrent workers take different ones; the lease makes a lost worker's ones due again."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            _due(now)
            .order_by("next_attempt_at", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids).update(locked_until=now + timedelta(seconds=_lease_seconds()))
    return ids


def _count_attempt(outcome: str) -> None:
    with contextlib.suppress(redis.RedisError):
        get_redis().incr(rkey("metrics", "webhook-attempts", outcome))


def backoff_seconds(failures: int) -> float:
    base = settings.OUTGOING_WEBHOOK_RETRY_BASE_SECONDS
    return min(base * 2 ** max(failures - 1, 0), settings.OUTGOING_WEBHOOK_RETRY_MAX_DELAY_SECONDS)


def delivery_attempt(delivery: WebhookDelivery) -> bool:
    """POST one delivery and record the answer; True when delivered."""
    endpoint, event = delivery.endpoint, delivery.event
    body, headers = signed_request(endpoint, event)
    code, answer, error = None, "", ""
    try:
        response = post_checked(
            endpoint.url, body=body, headers=headers, timeout=settings.OUTGOING_WEBHOOK_TIMEOUT_SECONDS
        )
        code, answer = response.status_code, response.text[:RESPONSE_KEPT_CHARS]
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except UnsafeTarget as exc:
        error = f"Refused to connect: {exc}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    ok = not error
    _count_attempt("delivered" if ok else "failed")
    now = timezone.now()
    with transaction.atomic():
        # The endpoint's row lock orders concurrent outcomes of one endpoint's deliveries.
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        fields = {
            "attempts": F("attempts") + 1,
            "last_attempt_at": now,
            "last_status_code": code,
            "last_response": answer,
            "last_error": error[:2000],
            "locked_until": None,
        }
        if ok:
            fields.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now)
            WebhookEndpoint.objects.filter(pk=locked.pk).update(
                failing_since=None, consecutive_failures=0, retry_at=None, last_success_at=now
            )
        else:
            failures = locked.consecutive_failures + 1
            retry_at = now + timedelta(seconds=backoff_seconds(failures))
            WebhookEndpoint.objects.filter(pk=locked.pk).update(
                failing_since=locked.failing_since or now,
                consecutive_failures=failures,
                retry_at=retry_at,
                last_failure_at=now,
            )
            fields["next_attempt_at"] = retry_at
            if retry_at > delivery.retry_until:
                fields["status"] = WebhookDelivery.Status.FAILED
                fields["last_error"] = (error + "; retried for its whole window: given up")[:2000]
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
        failing_since = None if ok else (locked.failing_since or now)
        if failing_since is not None and now - failing_since >= timedelta(
            seconds=settings.OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS
        ):
            endpoint_disable(
                endpoint=locked,
                reason=f"No successful delivery since {failing_since:%Y-%m-%d %H:%M:%S} UTC; last error: {error}",
            )
    return ok


def webhooks_deliver_due(*, limit: int | None = None) -> dict[str, int]:
    """Claim a batch of due deliveries and attempt each; wake another worker when the batch was
    full, and this queue again when more is due. Returns the counts, for logs."""
    limit = limit or settings.OUTGOING_WEBHOOK_BATCH
    ids = deliveries_claim(limit=limit)
    if len(ids) == limit:
        wake()  # a full batch: more are probably due, let another worker start on them
    deliveries = (
        WebhookDelivery.objects.filter(pk__in=ids).select_related("event", "endpoint").order_by("next_attempt_at", "id")
    )
    counts = {"delivered": 0, "failed": 0, "deferred": 0}
    failed_endpoints: set = set()
    for delivery in deliveries:
        if delivery.endpoint_id in failed_endpoints:
            # Its endpoint just failed: wait for the endpoint's backoff instead of hammering it.
            retry_at = WebhookEndpoint.objects.values_list("retry_at", flat=True).get(pk=delivery.endpoint_id)
            WebhookDelivery.objects.filter(pk=delivery.pk).update(locked_until=None, next_attempt_at=retry_at)
            counts["deferred"] += 1
            continue
        if delivery_attempt(delivery):
            counts["delivered"] += 1
        else:
            counts["failed"] += 1
            failed_endpoints.add(delivery.endpoint_id)
    if ids and _due(timezone.now()).exists():
        wake()
    return counts


# --- upkeep ------------------------------------------------------------------------------------


def webhooks_upkeep(*, now=None) -> dict[str, int]:
    """Give up deliveries whose retry time is over, disable endpoints failing for too long, delete
    what is older than the retention, and wake the queue if anything is due (beat, every minute)."""
    now = now or timezone.now()
    given_up = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, retry_until__lt=now).update(
        status=WebhookDelivery.Status.FAILED,
        locked_until=None,
        last_error="Not delivered within its retry window: given up.",
    )
    cutoff = now - timedelta(seconds=settings.OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS)
    disabled = 0
    for endpoint in WebhookEndpoint.objects.filter(is_active=True, failing_since__lt=cutoff):  # normally none
        with transaction.atomic():
            endpoint_disable(
                endpoint=endpoint,
                reason=f"No successful delivery since {endpoint.failing_since:%Y-%m-%d %H:%M:%S} UTC.",
            )
        disabled += 1
    old = now - timedelta(days=settings.OUTGOING_WEBHOOK_RETENTION_DAYS)
    deleted, _ = WebhookDelivery.objects.filter(created_at__lt=old).exclude(status="pending").delete()
    WebhookEvent.objects.filter(created_at__lt=old, deliveries__isnull=True).delete()
    if _due(now).exists():
        wake()
    return {"given_up": given_up, "disabled": disabled, "deleted": deleted}


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> None:
    """Stop delivering to an endpoint, fail what it had pending, and tell its organization."""
    now = timezone.now()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        is_active=False, disabled_at=now, disabled_reason=reason[:500], retry_at=None
    )
    WebhookDelivery.objects.filter(endpoint_id=endpoint.pk, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, locked_until=None, last_error=f"Endpoint disabled: {reason}"[:2000]
    )
    subscriptions_invalidate()
    logger.warning("Outgoing webhook endpoint %s (%s) disabled: %s", endpoint.pk, endpoint.url, reason)
    transaction.on_commit(lambda: _tell_organization(endpoint, reason))


def _tell_organization(endpoint: WebhookEndpoint, reason: str) -> None:
    """Email the organization's owners and operators that an endpoint was disabled."""
    addresses = sorted(
        set(
            Membership.objects.filter(
                organization_id=endpoint.organization_id, role__in=(Membership.Role.OWNER, Membership.Role.OPERATOR)
            )
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )
    if not addresses:
        return
    send_mail(
        subject=f"Webhook endpoint disabled: {endpoint.url}"[:200],
        message=(
            f"We stopped sending events to your webhook endpoint {endpoint.url}.\n\n{reason}\n\n"
            "Deliveries that were still pending are marked failed; you can replay them from the "
            "delivery log once the endpoint works again. Re-enable it in the API "
            f"(PATCH /api/v1/webhook-endpoints/{endpoint.pk} with is_active true) or the admin.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=addresses,
        fail_silently=True,
    )


# --- operators' services -----------------------------------------------------------------------


def endpoint_create(*, organization, url: str, event_types: list[str], description: str = "", actor=None):
    endpoint = WebhookEndpoint.objects.create(
        organization=organization,
        url=url,
        event_types=sorted(set(event_types)),
        description=description,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    subscriptions_invalidate()
    return endpoint


def endpoint_update(*, endpoint: WebhookEndpoint, **fields) -> WebhookEndpoint:
    """Change an endpoint; `is_active: true` on a disabled one re-enables it with a clean slate."""
    if "event_types" in fields:
        fields["event_types"] = sorted(set(fields["event_types"]))
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if fields.get("is_active") and not locked.is_active:
            fields.update(
                disabled_at=None, disabled_reason="", failing_since=None, consecutive_failures=0, retry_at=None
            )
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save()
    subscriptions_invalidate()
    return locked


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    with transaction.atomic():
        # The row lock waits for emitters holding it (_endpoints_held), so the deliveries they
        # wrote are there to be deleted with it; emitters after it find it gone.
        WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        endpoint.delete()
        subscriptions_invalidate()


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    endpoint.secret = new_webhook_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


def endpoint_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event for this endpoint alone, whatever it subscribes to."""
    if not endpoint.is_active:
        raise ApplicationError("The endpoint is disabled; enable it first.", disabled_reason=endpoint.disabled_reason)
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            organization_id=endpoint.organization_id,
            type=WebhookEventType.TEST,
            data={"endpoint": str(endpoint.pk), "message": "A test event: your endpoint receives our webhooks."},
        )
        delivery = WebhookDelivery.objects.create(event=event, endpoint=endpoint, retry_until=_retry_until())
    wake_after_commit()
    return delivery


def delivery_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again, with the same event id (a receiver that has it de-duplicates)."""
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        if not locked.endpoint.is_active:
            raise ApplicationError(
                "The endpoint is disabled; enable it before replaying its deliveries.",
                disabled_reason=locked.endpoint.disabled_reason,
            )
        if locked.status == WebhookDelivery.Status.PENDING and locked.locked_until:
            raise ApplicationError("This delivery is being attempted right now.", current_status=locked.status)
        locked.status = WebhookDelivery.Status.PENDING
        locked.next_attempt_at = timezone.now()
        locked.retry_until = _retry_until()
        locked.locked_until = None
        locked.save()
        # A replay is an operator's decision to try now: the endpoint's backoff does not hold it.
        WebhookEndpoint.objects.filter(pk=locked.endpoint_id).update(retry_at=None)
    wake_after_commit()
    return locked


__all__ = ["SUBSCRIBABLE_EVENT_TYPES", "event_emit", "events_emit", "webhooks_deliver_due", "webhooks_upkeep"]
