"""Live operations in the API: a campaign's progress (the WebSocket's message, for clients that
poll), and the organization's outgoing webhook endpoints with their delivery log and replay.

Every view starts from the user's organizations (another organization's endpoint or campaign is
a 404); viewers read, owners and operators change (campaigns.api_base.CanOperateOrganization).
ViewSets, registered on the router by tracking/api_urls.py.
"""

import uuid

import django_filters
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from campaigns.api import OrganizationSlugField, PauseFieldsSerializer
from campaigns.api_base import CampaignResourceViewSet, CanOperateOrganization, organization_for_create
from campaigns.models import Organization
from campaigns.selectors import organizations_for_user
from campaigns.states import CampaignStatus, Phase
from campaigns_project import serializers as strict
from campaigns_project.filters import FilterSet

from . import live, outbound
from .models_outbound import SUBSCRIBABLE_EVENT_TYPES, WebhookDelivery, WebhookEndpoint, WebhookEventType

# --- campaign.progress -------------------------------------------------------------------------


class RecipientCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Recipients in outreach.")
    sent = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Failed or bounced.")
    pending = serializers.IntegerField(help_text="Not finished yet (pending or being handed over).")


class ProgressCountsSerializer(serializers.Serializer):
    leads = serializers.IntegerField()
    verified = serializers.IntegerField(help_text="Leads verified sendable (valid or catch_all).")
    enriched = serializers.IntegerField()
    sent = serializers.IntegerField(help_text="Mails sent (or leads Instantly took).")
    recipients = RecipientCountsSerializer()


class ProgressDataSerializer(serializers.Serializer):
    campaign = serializers.UUIDField()
    organization = serializers.CharField(help_text="The organization's slug.")
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=CampaignStatus.choices)
    pause_cause = serializers.CharField(
        allow_null=True, help_text="Display only: manual, job, queue, breaker:<service>, deliverability:<figure>…"
    )
    pause = PauseFieldsSerializer(allow_null=True, help_text="The pause cause as fields; null unless paused.")
    phase = serializers.ChoiceField(choices=Phase.choices, allow_null=True)
    phase_progress = serializers.IntegerField(min_value=0, max_value=100)
    progress = serializers.IntegerField(min_value=0, max_value=100)
    counts = ProgressCountsSerializer()
    send_rate_per_minute = serializers.FloatField(help_text=f"Over the last {60} s (LIVE_RATE_WINDOW_SECONDS).")
    phase_rate_per_second = serializers.FloatField(help_text="Items of the current phase finished per second.")
    eta_seconds = serializers.IntegerField(allow_null=True, help_text="The current phase's end at its rate.")
    status_message = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()


class ProgressMessageSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=[live.CAMPAIGN_PROGRESS])
    version = serializers.IntegerField()
    id = serializers.CharField(help_text="This message's id.")
    sent_at = serializers.DateTimeField()
    data = ProgressDataSerializer()  # type: ignore[assignment]  # a field, not Serializer.data


class CampaignProgressViewSet(CampaignResourceViewSet):
    pagination_class = None
    single_object = True  # one object at the collection route (campaigns_project.schema)
    filter_backends: list = []

    @extend_schema(
        responses=ProgressMessageSerializer,
        operation_id="campaign_progress",
        tags=["campaigns"],
        summary="The campaign's campaign.progress message, as the WebSocket sends it",
    )
    def list(self, request, campaign_pk=None):
        """Status, pause cause, phase and its progress, overall progress, counts, send rate and ETA:
        the same message /ws/live/ pushes, for clients that poll."""
        return Response(live.campaign_progress_message(campaign=self.get_campaign()))


# --- webhook endpoints -------------------------------------------------------------------------


def endpoints_for_user(*, user) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(organization__in=organizations_for_user(user=user))


def _uuid_or_404(value) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404("Not found.") from None


class WebhookEndpointSerializer(strict.ModelSerializer):
    organization = OrganizationSlugField(
        slug_field="slug", required=False, help_text="One of your organizations; optional when you belong to one."
    )
    url = serializers.CharField(max_length=2000, help_text="http(s) URL on a public address.")
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE_EVENT_TYPES),
        min_length=1,
        max_length=len(SUBSCRIBABLE_EVENT_TYPES),
        help_text="The events this endpoint receives.",
    )
    description = serializers.CharField(max_length=255, required=False, allow_blank=True)
    is_active = serializers.BooleanField(
        required=False, help_text="false stops deliveries; true re-enables a disabled endpoint."
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "organization",
            "url",
            "description",
            "event_types",
            "is_active",
            "disabled_at",
            "disabled_reason",
            "failing_since",
            "consecutive_failures",
            "retry_at",
            "last_success_at",
            "last_failure_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "disabled_at",
            "disabled_reason",
            "failing_since",
            "consecutive_failures",
            "retry_at",
            "last_success_at",
            "last_failure_at",
            "created_at",
            "updated_at",
        ]

    def validate_url(self, value: str) -> str:
        refusal = outbound.url_refusal(value)
        if refusal:
            raise serializers.ValidationError(refusal)
        return value


class WebhookEndpointUpdateSerializer(WebhookEndpointSerializer):
    # Redeclared read-only: DRF replaces the parent's field; the stubs see an incompatible class attribute.
    organization: serializers.SlugRelatedField[Organization] = serializers.SlugRelatedField(  # type: ignore[assignment]
        slug_field="slug", read_only=True
    )


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Signs every delivery (Standard Webhooks). Shown on creation and rotation only."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class DeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.UUIDField(source="event.id", help_text="The webhook-id header: de-duplicate on it.")
    event_type = serializers.ChoiceField(source="event.type", choices=WebhookEventType.choices)
    payload = serializers.SerializerMethodField(help_text="The body that is POSTed.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "next_attempt_at",
            "retry_until",
            "last_attempt_at",
            "delivered_at",
            "last_status_code",
            "last_response",
            "last_error",
            "created_at",
            "payload",
        ]
        read_only_fields = fields

    def get_payload(self, delivery: WebhookDelivery) -> dict:
        return delivery.event.body()


class DeliveryFilter(FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=WebhookDelivery.Status.choices)

    class Meta:
        model = WebhookDelivery
        fields = ["status"]


class NoBodySerializer(strict.Serializer):
    """No fields; any field sent is refused."""


Conflict = OpenApiResponse(description="Refused in the endpoint's or delivery's state; `detail` says why.")


@extend_schema_view(
    list=extend_schema(description="Your organizations' outgoing webhook endpoints."),
    create=extend_schema(
        description="Add an endpoint (owners and operators). The answer holds its signing secret, shown only here "
        "and on rotation.",
        responses={201: WebhookEndpointWithSecretSerializer},
    ),
    retrieve=extend_schema(description="One endpoint: what it receives, whether it is failing or disabled, and why."),
    update=extend_schema(description="Replace an endpoint's URL, events, description, or enable it again."),
    partial_update=extend_schema(description="Change some of an endpoint's fields; is_active true re-enables it."),
    destroy=extend_schema(description="Delete an endpoint and its delivery log."),
)
class WebhookEndpointViewSet(viewsets.ModelViewSet):
    serializer_class = WebhookEndpointSerializer
    permission_classes = [permissions.IsAuthenticated, CanOperateOrganization]
    lookup_value_regex = "[^/.]+"
    search_fields = ["url", "description"]
    ordering_fields = ["created_at", "url"]
    ordering = ["-created_at"]
    filterset_fields: list[str] = []

    def get_queryset(self):
        return endpoints_for_user(user=self.request.user).select_related("organization")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return WebhookEndpointUpdateSerializer
        if self.action == "deliveries":
            return DeliverySerializer
        return WebhookEndpointSerializer

    def get_object(self):
        endpoint = self.get_queryset().filter(pk=_uuid_or_404(self.kwargs["pk"])).first()
        if endpoint is None:
            raise Http404("No webhook endpoint with that id.")
        self.check_object_permissions(self.request, endpoint)
        return endpoint

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        organization = organization_for_create(user=request.user, organization=data.pop("organization", None))
        data.pop("is_active", None)
        endpoint = outbound.endpoint_create(organization=organization, actor=request.user, **data)
        return Response(
            WebhookEndpointWithSecretSerializer(endpoint, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )

    def perform_update(self, serializer):
        serializer.instance = outbound.endpoint_update(endpoint=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        outbound.endpoint_delete(endpoint=instance)

    @extend_schema(request=None, responses={200: WebhookEndpointWithSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new signing secret; the old one stops signing at once. The answer holds the new one."""
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        endpoint = outbound.endpoint_rotate_secret(endpoint=self.get_object())
        return Response(WebhookEndpointWithSecretSerializer(endpoint, context={"request": request}).data)

    @extend_schema(request=None, responses={202: DeliverySerializer, 409: Conflict})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send this endpoint a `webhook.test` event now, whatever it subscribes to."""
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        delivery = outbound.endpoint_test(endpoint=self.get_object())
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=DeliverySerializer(many=True),
        parameters=[OpenApiParameter("status", str, many=True, enum=WebhookDelivery.Status.values)],
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The endpoint's delivery log, newest first: status, attempts, the last answer, the body."""
        endpoint = self.get_object()
        found = DeliveryFilter(
            request.query_params,
            queryset=WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event").order_by("-id"),
        )
        if not found.is_valid():
            raise serializers.ValidationError(found.errors)
        page = self.paginate_queryset(found.qs)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


class WebhookDeliveryViewSet(viewsets.GenericViewSet):
    """One delivery of an outgoing webhook (webhook-deliveries/{delivery_id}), and its replay."""

    permission_classes = [permissions.IsAuthenticated, CanOperateOrganization]
    lookup_url_kwarg = "delivery_id"
    lookup_value_regex = "[^/.]+"

    @extend_schema(
        request=None,
        responses={202: DeliverySerializer, 409: Conflict},
        operation_id="webhook_delivery_replay",
        tags=["webhook-endpoints"],
    )
    @action(detail=True, methods=["post"])
    def replay(self, request, delivery_id=None):
        """Send a delivery again now, with the same event id, whatever its status (owners and operators)."""
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        try:
            pk = int(str(delivery_id))
        except ValueError:
            raise Http404("No delivery with that id.") from None
        delivery = (
            WebhookDelivery.objects.filter(pk=pk, endpoint__in=endpoints_for_user(user=request.user))
            .select_related("endpoint", "event")
            .first()
        )
        if delivery is None:
            raise Http404("No delivery with that id.")
        self.check_object_permissions(request, delivery)
        delivery = outbound.delivery_replay(delivery=delivery)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
