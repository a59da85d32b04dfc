"""The inbound-mail endpoint: a relay or an ESP's inbound route posts one raw MIME message; we
match it to the recipient it answers and record a reply, an auto-reply or a bounce
(tracking/inbound.py, docs/flows/replies.md).

Authenticated as the provider webhooks are (tracking/webhooks.py), with INBOUND_MAIL_SECRET:
either the Standard Webhooks signature over the raw body (webhook-id, webhook-timestamp,
webhook-signature; a stale timestamp is refused) or `Authorization: Bearer <secret>` for relays
that can only add a header. The size is checked before the body is read.

A message that matches no recipient is answered 200 `{"recorded": false, "reason": "unmatched"}`,
not 404: the sender of a route retries any non-2xx answer, and retrying an unmatched message can
never make it match."""

import hmac

from django.conf import settings
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.exceptions import APIException, UnsupportedMediaType
from rest_framework.response import Response

from . import inbound, webhooks
from .api import WebhookThrottle, WebhookUnauthorized

# Relays post the message as it is; some cannot set message/rfc822 and say what they can.
INBOUND_MEDIA_TYPES = ("message/rfc822", "application/octet-stream", "text/plain")


class InboundMailTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The message is too large."


class InboundSignatureVerifier(webhooks.StandardWebhooksVerifier):
    provider = "inbound"

    def key(self) -> bytes:
        return settings.INBOUND_MAIL_SECRET.encode()


def inbound_verify(*, headers, body: bytes) -> None:
    """Raises WebhookRefused unless the request carries the secret, as a signature or a Bearer."""
    key = settings.INBOUND_MAIL_SECRET.encode()
    if not key:
        raise webhooks.WebhookRefused("No INBOUND_MAIL_SECRET is configured: inbound mail is refused.")
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        if not hmac.compare_digest(token.strip().encode(), key):
            raise webhooks.WebhookRefused("Wrong Authorization: Bearer secret.")
        return
    if not headers.get("webhook-signature"):
        raise webhooks.WebhookRefused("Missing webhook-signature (or Authorization: Bearer).")
    InboundSignatureVerifier().verify(headers=headers, body=body)


InboundMailAnswer = inline_serializer(
    "InboundMailAnswer",
    {
        "recorded": serializers.BooleanField(),
        "type": serializers.ChoiceField(choices=["reply", "auto_reply", "bounce"], required=False),
        "event_id": serializers.IntegerField(required=False),
        "recipient_id": serializers.IntegerField(required=False),
        "matched_by": serializers.CharField(required=False, help_text="`message_id <…>` or `token`."),
        "occurred_at": serializers.DateTimeField(required=False),
        "reason": serializers.CharField(
            required=False,
            help_text="Why nothing was recorded: unmatched, duplicate message, own message, ignored.",
        ),
        "classification": serializers.ListField(child=serializers.CharField(), required=False),
        "notes": serializers.ListField(child=serializers.CharField(), required=False),
    },
)


class InboundMailViewSet(viewsets.ViewSet):
    """Raw MIME in, a reply / auto-reply / bounce event out. No session or token: the secret is the
    credential, so CSRF does not apply."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [WebhookThrottle]
    throttle_scope = "tracking_webhook"

    def get_authenticate_header(self, request):
        return "Bearer"

    @extend_schema(
        operation_id="inbound_mail_create",
        summary="Post one inbound mail message (raw MIME)",
        description=(
            "Matches the message to the recipient it answers by In-Reply-To / References against the "
            "Message-ID we sent, else by the tracking token (a `+<token>` plus-address or our tracking "
            "URLs quoted in the body), classifies it (RFC 3834 auto-reply headers and out-of-office "
            "subjects; RFC 3464 delivery-status reports are bounces) and records it once per "
            "Message-ID. An unmatched message is a 200 with `reason: unmatched`, so routes do not retry it."
        ),
        request={media_type: OpenApiTypes.BINARY for media_type in INBOUND_MEDIA_TYPES},
        parameters=[
            OpenApiParameter(name, str, OpenApiParameter.HEADER, required=False, description=text)
            for name, text in (
                ("Authorization", "`Bearer <INBOUND_MAIL_SECRET>`, or sign instead:"),
                ("webhook-id", "Standard Webhooks message id."),
                ("webhook-timestamp", "Unix seconds; refused outside WEBHOOK_TOLERANCE_SECONDS."),
                ("webhook-signature", "`v1,<base64 HMAC-SHA256 of id.timestamp.body>` with INBOUND_MAIL_SECRET."),
            )
        ],
        responses={
            200: InboundMailAnswer,
            400: OpenApiResponse(description="Not a MIME message we can read: `body` names the problem."),
            401: OpenApiResponse(description="Missing or wrong secret or signature, or a stale timestamp."),
            413: OpenApiResponse(description="Larger than INBOUND_MAIL_MAX_BYTES."),
        },
    )
    def create(self, request):
        limit = settings.INBOUND_MAIL_MAX_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise InboundMailTooLarge(f"The message is {declared} bytes; at most {limit} are accepted.")
        media_type = request.content_type.split(";")[0].strip().lower()
        if media_type not in INBOUND_MEDIA_TYPES:
            raise UnsupportedMediaType(media_type, detail=f"Expected one of: {', '.join(INBOUND_MEDIA_TYPES)}.")
        body = request.body
        if len(body) > limit:
            raise InboundMailTooLarge(f"The message is {len(body)} bytes; at most {limit} are accepted.")
        try:
            inbound_verify(headers=request.headers, body=body)
        except webhooks.WebhookRefused as exc:
            raise WebhookUnauthorized(str(exc))
        with transaction.atomic():
            return Response(inbound.inbound_mail_record(raw=body, via="inbound"))
