"""Tracking API: recipients, test send, stats and analytics, recipient events, webhooks.

Views are thin: every campaign is looked up through campaigns.selectors (another organization's
campaign is a 404), writes need an owner or operator role, and the work is one service or selector.
"""

import json

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from campaigns.selectors import campaign_get_for_user, user_can_operate
from integrations.errors import ProviderError

from . import selectors, services, webhooks
from .models import EmailEvent, Link, Recipient
from .sending import campaign_send_test
from .states import RecipientStatus

OPERATE_DENIED = "Your role in this organization does not allow changes."


def _campaign(request, campaign_id, *, write: bool = False):
    campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id)
    if write and not user_can_operate(user=request.user, organization_id=campaign.organization_id):
        raise PermissionDenied(OPERATE_DENIED)
    return campaign


class RecipientSerializer(serializers.ModelSerializer):
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
            "created_at",
        ]
        read_only_fields = fields


class RecipientsAddSerializer(serializers.Serializer):
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


class RecipientListView(GenericAPIView):
    serializer_class = RecipientSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, many=True, enum=RecipientStatus.values),
            OpenApiParameter("search", str, description="Part of the email address."),
        ],
        responses=RecipientSerializer(many=True),
    )
    def get(self, request, campaign_id):
        campaign = _campaign(request, campaign_id)
        statuses = request.query_params.getlist("status")
        bad = sorted(set(statuses) - set(RecipientStatus.values))
        if bad:
            raise serializers.ValidationError({"status": [f"Unknown status: {', '.join(bad)}."]})
        recipients = selectors.recipient_list(
            campaign=campaign, statuses=statuses, search=request.query_params.get("search", "")
        )
        page = self.paginate_queryset(recipients)
        return self.get_paginated_response(RecipientSerializer(page, many=True).data)

    @extend_schema(request=RecipientsAddSerializer, responses={201: RecipientsAddResult})
    def post(self, request, campaign_id):
        campaign = _campaign(request, campaign_id, write=True)
        serializer = RecipientsAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        counts = services.recipients_add(campaign=campaign, actor=request.user, **serializer.validated_data)
        return Response(counts, status=status.HTTP_201_CREATED)


class RecipientDetailView(APIView):
    @extend_schema(responses=RecipientSerializer)
    def get(self, request, campaign_id, recipient_id):
        campaign = _campaign(request, campaign_id)
        recipient = campaign.recipients.filter(pk=recipient_id).first()
        if recipient is None:
            raise Http404("No recipient with that id.")
        return Response(RecipientSerializer(recipient).data)

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="Only pending recipients can go.")})
    def delete(self, request, campaign_id, recipient_id):
        campaign = _campaign(request, campaign_id, write=True)
        try:
            services.recipient_delete(campaign=campaign, recipient_id=recipient_id, actor=request.user)
        except Recipient.DoesNotExist:
            raise Http404("No recipient with that id.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The mail server is unavailable."


class TestSendSerializer(serializers.Serializer):
    email = serializers.EmailField()


class TestSendView(APIView):
    @extend_schema(
        request=TestSendSerializer,
        responses={200: inline_serializer("TestSendResult", {"message_id": serializers.CharField()})},
    )
    def post(self, request, campaign_id):
        campaign = _campaign(request, campaign_id, write=True)
        body = TestSendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            message_id = campaign_send_test(campaign=campaign, to=body.validated_data["email"], actor=request.user)
        except ProviderError as exc:
            raise ServiceUnavailable(f"The mail server is unavailable: {exc.message}")
        return Response({"message_id": message_id})


class StatsView(APIView):
    @extend_schema(responses=inline_serializer("CampaignStats", {"sent": serializers.IntegerField()}))
    def get(self, request, campaign_id):
        return Response(selectors.campaign_stats(campaign=_campaign(request, campaign_id)))


class AnalyticsView(APIView):
    @extend_schema(responses=inline_serializer("CampaignAnalytics", {"hourly": serializers.ListField()}))
    def get(self, request, campaign_id):
        return Response(selectors.campaign_analytics(campaign=_campaign(request, campaign_id)))


# --- Events of one recipient -------------------------------------------------------------------


class EmailEventSerializer(serializers.ModelSerializer):
    url = serializers.CharField(source="link.url", default=None, read_only=True)

    class Meta:
        model = EmailEvent
        fields = ["id", "type", "occurred_at", "link", "url", "user_agent", "ip", "is_machine", "source", "payload"]
        read_only_fields = fields


class EventBodySerializer(serializers.Serializer):
    occurred_at = serializers.DateTimeField(required=False)
    link_id = serializers.IntegerField(required=False, min_value=1)
    user_agent = serializers.CharField(required=False, allow_blank=True, max_length=512)
    is_machine = serializers.BooleanField(required=False, default=False)


def _recipient(request, recipient_id, *, write: bool = False) -> Recipient:
    recipient = selectors.recipient_get_for_user(user=request.user, recipient_id=recipient_id)
    if write and not user_can_operate(user=request.user, organization_id=recipient.campaign.organization_id):
        raise PermissionDenied(OPERATE_DENIED)
    return recipient


class RecipientEventCreateView(APIView):
    """Record an open, a click or a bounce reported by an integrator (source `api`)."""

    event_type = ""

    @extend_schema(request=EventBodySerializer, responses={201: EmailEventSerializer})
    def post(self, request, recipient_id):
        recipient = _recipient(request, recipient_id, write=True)
        body = EventBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        link_id = data.get("link_id")
        if link_id is not None and not Link.objects.filter(pk=link_id, campaign_id=recipient.campaign_id).exists():
            raise serializers.ValidationError({"link_id": ["Not a link of this recipient's campaign."]})
        event = services.event_record(
            type=self.event_type,
            recipient_id=recipient.pk,
            occurred_at=data.get("occurred_at"),
            link_id=link_id,
            user_agent=data.get("user_agent", ""),
            is_machine=data["is_machine"],
            source="api",
        )
        return Response(EmailEventSerializer(event).data, status=status.HTTP_201_CREATED)


class RecipientEventListView(GenericAPIView):
    serializer_class = EmailEventSerializer

    def get(self, request, recipient_id):
        recipient = _recipient(request, recipient_id)
        page = self.paginate_queryset(selectors.recipient_events(recipient=recipient))
        return self.get_paginated_response(EmailEventSerializer(page, many=True).data)


# --- Webhooks ----------------------------------------------------------------------------------


class WebhookThrottle(SimpleRateThrottle):
    """Per source address; generous, since a provider posts bursts after a campaign goes out."""

    scope = "tracking_webhook"
    rate = "3000/min"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


WEBHOOK_PARSERS = {"generic", "instantly"}


class WebhookView(APIView):
    """Signed provider webhooks. No session or token: the HMAC of the raw body is the credential,
    so CSRF does not apply (DRF enforces CSRF only for session authentication)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [WebhookThrottle]

    @extend_schema(request=None, responses={200: OpenApiResponse(description="recorded or ignored")})
    def post(self, request, provider):
        if provider not in WEBHOOK_PARSERS:
            raise Http404("Unknown provider.")
        body = request.body
        if not webhooks.signature_valid(body=body, header=request.headers.get(webhooks.SIGNATURE_HEADER, "")):
            raise PermissionDenied("Missing or invalid signature.")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise serializers.ValidationError({"body": ["Not valid JSON."]})
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Expected a JSON object."]})
        event = webhooks.parse_generic(data) if provider == "generic" else webhooks.parse_instantly(data, body=body)
        if event is None:
            return Response({"recorded": False, "reason": "event type not tracked"})
        with transaction.atomic():
            return Response(webhooks.webhook_ingest(provider=provider, event=event))
