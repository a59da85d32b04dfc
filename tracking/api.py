"""Tracking API: recipients, test send, stats and analytics, recipient events, webhooks.

ViewSets on the router (tracking/api_urls.py): a campaign's sub-resources derive from
campaigns.api_base.CampaignResourceViewSet (another organization's campaign is a 404; writes need
an owner or operator role, CanOperateOrganization), and the work is one service or selector.
"""

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from campaigns.api_base import CampaignResourceViewSet, CanOperateOrganization
from campaigns_project import serializers as strict
from campaigns_project.datetimes import event_time_refusal
from campaigns_project.filters import FilterSet
from campaigns_project.pagination import HasNextPagination
from campaigns_project.parsers import JSONInputError, as_api_error, json_loads
from campaigns_project.throttling import ScopedRateThrottle
from integrations.errors import ProviderError

from . import selectors, services, webhooks
from .models import EmailEvent, Link, Recipient
from .sending import campaign_send_test
from .states import EventType, RecipientStatus


class RecipientSerializer(strict.ModelSerializer):
    class Meta:
        model = Recipient
        fields = [
            "id",
            "email",
            "status",
            "lead",
            "message_id",
            "sent_at",
            "first_opened_at",
            "first_human_opened_at",
            "first_clicked_at",
            "first_human_clicked_at",
            "last_error",
            "sequence_step",
            "next_send_at",
            "stopped_at",
            "stop_reason",
            "created_at",
        ]
        read_only_fields = fields


class RecipientsAddSerializer(strict.Serializer):
    emails = serializers.ListField(
        child=serializers.CharField(max_length=254, trim_whitespace=True, allow_blank=True),
        required=False,
        max_length=services.MAX_RECIPIENTS_PER_REQUEST,
    )
    lead_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=services.MAX_RECIPIENTS_PER_REQUEST
    )

    def validate_emails(self, emails: list[str]) -> list[str]:
        invalid = []
        for email in emails:
            try:
                validate_email(email)
            except DjangoValidationError:
                invalid.append(email)
        if invalid:
            shown = ", ".join(repr(email) for email in invalid[:50])
            raise serializers.ValidationError(f"{len(invalid)} invalid email address(es): {shown}.")
        return emails

    def validate(self, attrs):
        if not attrs.get("emails") and not attrs.get("lead_ids"):
            raise serializers.ValidationError({"emails": ["Give emails or lead_ids (or both)."]})
        return attrs


RecipientsAddResult = inline_serializer(
    "RecipientsAddResult",
    {name: serializers.IntegerField() for name in ("created", "duplicates", "suppressed", "invalid")},
)


class RecipientFilter(FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=RecipientStatus.choices)

    class Meta:
        model = Recipient
        fields = ["status"]


@extend_schema_view(
    list=extend_schema(
        description="The campaign's recipients, paginated (no count: see docs/decisions.md), filtered by status "
        "and searched by address."
    ),
    retrieve=extend_schema(
        description="One recipient of the campaign: status, message id, when it was sent, first opened and clicked."
    ),
)
class RecipientViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, CampaignResourceViewSet
):
    """A campaign's recipients (filtered by status, searched by address), or add some."""

    serializer_class = RecipientSerializer
    filterset_class = RecipientFilter
    pagination_class = HasNextPagination
    search_fields = ["email"]
    ordering_fields = ["id"]
    ordering = ["id"]
    lookup_value_regex = r"\d+"
    lookup_url_kwarg = "recipient_id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Recipient.objects.none()
        return Recipient.objects.filter(campaign=self.get_campaign())

    def get_object(self):
        recipient = self.get_queryset().filter(pk=self.kwargs["recipient_id"]).first()
        if recipient is None:
            raise Http404("No recipient with that id.")
        return recipient

    @extend_schema(request=RecipientsAddSerializer, responses={201: RecipientsAddResult})
    def create(self, request, *args, **kwargs):
        """Add recipients by address or from the campaign's leads; duplicates, suppressed addresses
        and leads that failed verification are skipped and counted. Refused (409) once final."""
        serializer = RecipientsAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        counts = services.recipients_add(campaign=self.get_campaign(), actor=request.user, **serializer.validated_data)
        return Response(counts, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="Only pending recipients can go.")})
    def destroy(self, request, *args, **kwargs):
        """Remove a recipient nothing was sent to (pending only; 409 otherwise)."""
        try:
            services.recipient_delete(
                campaign=self.get_campaign(), recipient_id=int(self.kwargs["recipient_id"]), actor=request.user
            )
        except Recipient.DoesNotExist:
            raise Http404("No recipient with that id.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The mail server is unavailable."


class TestSendSerializer(strict.Serializer):
    email = serializers.EmailField()
    mailbox = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="One of the campaign's active mailboxes to send from; default: its first one not paused.",
    )


class TestSendViewSet(CampaignResourceViewSet):
    """Render the campaign for a sample lead and mail it to one address, as a real send would be.
    Rate-limited per user (the `test_send` rate): each one renders and sends a message."""

    throttle_scope = "test_send"
    serializer_class = TestSendSerializer

    @extend_schema(
        request=TestSendSerializer,
        responses={200: inline_serializer("TestSendResult", {"message_id": serializers.CharField()})},
    )
    def create(self, request, campaign_pk=None):
        body = TestSendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        campaign = self.get_campaign()
        mailbox = None
        if "mailbox" in body.validated_data:
            mailbox = campaign.mailboxes.filter(pk=body.validated_data["mailbox"], active=True).first()
            if mailbox is None:
                raise serializers.ValidationError({"mailbox": ["Not an active mailbox of this campaign."]})
            if mailbox.is_paused:
                raise serializers.ValidationError({"mailbox": [f"Mailbox {mailbox.name} is paused."]})
        try:
            message_id = campaign_send_test(
                campaign=campaign, to=body.validated_data["email"], actor=request.user, mailbox=mailbox
            )
        except ProviderError as exc:
            raise ServiceUnavailable(f"The mail server is unavailable: {exc.message}")
        return Response({"message_id": message_id})


class StatsViewSet(CampaignResourceViewSet):
    """Sent, delivered, opens and clicks (unique and total, human and raw), bounces, complaints,
    unsubscribes, replies and rates, from the campaign's counters."""

    pagination_class = None
    single_object = True  # one object at the collection route (campaigns_project.schema)
    filter_backends: list = []

    @extend_schema(responses=inline_serializer("CampaignStats", {"sent": serializers.IntegerField()}))
    def list(self, request, campaign_pk=None):
        return Response(selectors.campaign_stats(campaign=self.get_campaign()))


class AnalyticsViewSet(CampaignResourceViewSet):
    """Events per hour (48 h) and per day (30 days), the top links, and Instantly's own figures for
    a campaign on that channel, as the periodic sync stored them."""

    pagination_class = None
    single_object = True  # one object at the collection route (campaigns_project.schema)
    filter_backends: list = []

    @extend_schema(responses=inline_serializer("CampaignAnalytics", {"hourly": serializers.ListField()}))
    def list(self, request, campaign_pk=None):
        return Response(selectors.campaign_analytics(campaign=self.get_campaign()))


# --- Events of one recipient -------------------------------------------------------------------


class EmailEventSerializer(strict.ModelSerializer):
    url = serializers.CharField(source="link.url", default=None, read_only=True, allow_null=True)

    class Meta:
        model = EmailEvent
        fields = ["id", "type", "occurred_at", "link", "url", "user_agent", "ip", "is_machine", "source", "payload"]
        read_only_fields = fields


class EventBodySerializer(strict.Serializer):
    occurred_at = strict.DateTimeField(
        required=False, help_text="When it happened (default: now); within the last 30 days, at most 1 hour ahead."
    )
    link_id = serializers.IntegerField(required=False, min_value=1)
    user_agent = serializers.CharField(required=False, allow_blank=True, max_length=512)
    is_machine = serializers.BooleanField(required=False, default=False)

    def validate_occurred_at(self, value):
        refusal = event_time_refusal(value)
        if refusal:
            raise serializers.ValidationError(refusal)
        return value


class RecipientTrackingViewSet(viewsets.GenericViewSet):
    """One recipient's events (campaigns/tracking/{recipient_id}/events), and recording an open, a
    click or a bounce reported by an integrator (source `api`)."""

    permission_classes = [permissions.IsAuthenticated, CanOperateOrganization]
    serializer_class = EmailEventSerializer
    pagination_class = HasNextPagination
    filter_backends: list = []
    lookup_url_kwarg = "recipient_id"
    lookup_value_regex = "[^/.]+"

    def get_object(self) -> Recipient:
        recipient = selectors.recipient_get_for_user(user=self.request.user, recipient_id=self.kwargs["recipient_id"])
        self.check_object_permissions(self.request, recipient)
        return recipient

    @extend_schema(responses=EmailEventSerializer(many=True))  # paginated, as the answer is
    @action(detail=True, methods=["get"])
    def events(self, request, recipient_id=None):
        """Every event of one recipient, newest first."""
        page = self.paginate_queryset(selectors.recipient_events(recipient=self.get_object()))
        return self.get_paginated_response(EmailEventSerializer(page, many=True).data)

    def _record(self, request, event_type: str) -> Response:
        recipient = self.get_object()
        body = EventBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        link_id = data.get("link_id")
        if link_id is not None and not Link.objects.filter(pk=link_id, campaign_id=recipient.campaign_id).exists():
            raise serializers.ValidationError({"link_id": ["Not a link of this recipient's campaign."]})
        event = services.event_record(
            type=event_type,
            recipient_id=recipient.pk,
            occurred_at=data.get("occurred_at"),
            link_id=link_id,
            user_agent=data.get("user_agent", ""),
            is_machine=data["is_machine"],
            source="api",
        )
        return Response(EmailEventSerializer(event).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=EventBodySerializer, responses={201: EmailEventSerializer})
    @action(detail=True, methods=["post"])
    def open(self, request, recipient_id=None):
        """Record an open reported by an integrator (source `api`)."""
        return self._record(request, EventType.OPEN)

    @extend_schema(request=EventBodySerializer, responses={201: EmailEventSerializer})
    @action(detail=True, methods=["post"])
    def click(self, request, recipient_id=None):
        """Record a click reported by an integrator (source `api`)."""
        return self._record(request, EventType.CLICK)

    @extend_schema(request=EventBodySerializer, responses={201: EmailEventSerializer})
    @action(detail=True, methods=["post"])
    def bounce(self, request, recipient_id=None):
        """Record a bounce reported by an integrator (source `api`)."""
        return self._record(request, EventType.BOUNCE)


# --- Webhooks ----------------------------------------------------------------------------------


class WebhookThrottle(ScopedRateThrottle):
    """Per source address (`tracking_webhook` rate); generous, since a provider posts bursts after
    a campaign goes out."""

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class GenericWebhookSerializer(serializers.Serializer):
    """Our own event format (schema only: parsed by tracking.webhooks.parse_generic)."""

    event_id = serializers.CharField(max_length=255, required=False, help_text="Default: the webhook-id header.")
    type = serializers.ChoiceField(choices=[*EventType.values, *webhooks.GENERIC_TYPE_ALIASES])
    message_id = serializers.CharField(required=False, help_text="The Message-ID we sent (or give `token`).")
    token = serializers.CharField(required=False)
    occurred_at = serializers.DateTimeField(required=False)
    link_id = serializers.IntegerField(required=False)
    user_agent = serializers.CharField(required=False, allow_blank=True)
    is_machine = serializers.BooleanField(required=False)
    bounce_type = serializers.ChoiceField(choices=["hard", "soft"], required=False)


class InstantlyWebhookSerializer(serializers.Serializer):
    """Instantly's event payload (schema only), read tolerantly; other keys may come too."""

    event_type = serializers.CharField()
    timestamp = serializers.DateTimeField(help_text="When the event occurred; must be within the tolerance window.")
    campaign_id = serializers.CharField()
    lead_email = serializers.CharField()


WebhookAnswer = inline_serializer(
    "WebhookAnswer",
    {
        "recorded": serializers.BooleanField(),
        "event_id": serializers.IntegerField(required=False),
        "occurred_at": serializers.DateTimeField(required=False),
        "reason": serializers.CharField(required=False, help_text="Why nothing was recorded."),
        "notes": serializers.ListField(
            child=serializers.CharField(), required=False, help_text="E.g. an event time outside the window."
        ),
    },
)
WEBHOOK_HEADERS = [
    OpenApiParameter(name, str, OpenApiParameter.HEADER, required=False, description=text)
    for name, text in (
        ("webhook-id", "generic: the message id (Standard Webhooks)."),
        ("webhook-timestamp", "generic: Unix seconds; refused outside WEBHOOK_TOLERANCE_SECONDS."),
        ("webhook-signature", "generic: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated."),
        ("Authorization", "instantly: `Bearer <WEBHOOK_SECRET_INSTANTLY>` (set in the webhook's headers)."),
    )
]


class WebhookUnauthorized(APIException):
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The webhook is not authentic."


class WebhookViewSet(viewsets.GenericViewSet):
    """A provider's webhook, authenticated by that provider's scheme (tracking.webhooks,
    docs/security.md) and recorded as an email event. No session or token: the signature or the
    shared secret is the credential, so CSRF does not apply. Replays are no-ops; an event time
    outside the accepted window is recorded at the time received, with a note."""

    provider = ""
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [WebhookThrottle]
    throttle_scope = "tracking_webhook"

    def get_authenticate_header(self, request):
        return "Webhook-Signature" if self.provider == "generic" else "Bearer"

    def create(self, request):
        verifier = webhooks.VERIFIERS[self.provider]
        body = request.body
        try:
            webhook_id = verifier.verify(headers=request.headers, body=body)
            data = json_loads(body)
        except webhooks.WebhookRefused as exc:
            raise WebhookUnauthorized(str(exc))
        except JSONInputError as exc:
            raise as_api_error(exc)
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Expected a JSON object."]})
        event: webhooks.WebhookEvent | None
        if self.provider == "generic":
            event = webhooks.parse_generic(data, webhook_id=webhook_id)
        else:
            if not isinstance(verifier, webhooks.InstantlyVerifier):  # the one other provider's
                raise TypeError(f"no freshness check for webhook provider {self.provider!r}")
            try:
                verifier.verify_fresh(data)
            except webhooks.WebhookRefused as exc:
                raise WebhookUnauthorized(str(exc))
            event = webhooks.parse_instantly(data, body=body)
        if event is None:
            return Response({"recorded": False, "reason": "event type not tracked"})
        with transaction.atomic():
            return Response(webhooks.webhook_ingest(provider=self.provider, event=event))


def _webhook_schema(body, headers: list, refused: str):
    return extend_schema(
        request={"application/json": body},
        parameters=headers,
        responses={200: WebhookAnswer, 401: OpenApiResponse(description=refused)},
    )


class GenericWebhookViewSet(WebhookViewSet):
    """Our own signed event format (Standard Webhooks: webhook-id, webhook-timestamp,
    webhook-signature), for relays and tools we control. Recorded once per event id."""

    provider = "generic"

    @_webhook_schema(
        GenericWebhookSerializer,
        WEBHOOK_HEADERS[:3],
        "Missing or wrong signature, or a timestamp outside the tolerance window.",
    )
    def create(self, request):
        return super().create(request)


class InstantlyWebhookViewSet(WebhookViewSet):
    """Instantly's event webhooks, authenticated by the `Authorization: Bearer` secret configured in
    the Instantly webhook's headers and a payload timestamp within the tolerance window."""

    provider = "instantly"

    @_webhook_schema(
        InstantlyWebhookSerializer,
        WEBHOOK_HEADERS[3:],
        "Missing or wrong shared secret, or a payload timestamp outside the tolerance window.",
    )
    def create(self, request):
        return super().create(request)
