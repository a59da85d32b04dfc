"""The sequence API: a campaign's steps, A/B variants, window and stop rules, per-variant stats
and each recipient's timeline, as ViewSets nested under /campaigns/{campaign_pk}/.

Scoped to the member's organizations (another organization's campaign is a 404); viewers read,
owners and operators write (the campaign writes' rule). Writes go through
tracking/sequence_services.py, which validates templates as the campaign's own are checked."""

import re
from datetime import time

import django_filters
from django.http import Http404
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from campaigns.api_base import CampaignResourceViewSet
from campaigns_project import serializers as strict
from campaigns_project.filters import FilterSet

from . import sequence_services
from .models import Recipient
from .models_sequences import SequenceSettings, SequenceStep, StepVariant
from .sequence_stats import recipient_timeline, variant_stats

CAMPAIGN_PK = OpenApiParameter("campaign_pk", str, OpenApiParameter.PATH, description="The campaign's id.")


class SequenceStepSerializer(strict.ModelSerializer):
    number = serializers.IntegerField(read_only=True, help_text="2 for the first follow-up; step 1 is the campaign.")
    delay_days = serializers.IntegerField(min_value=0, max_value=365, required=False)
    # Defaults as the model's, also for form posts (where an absent checkbox would mean False).
    business_days = serializers.BooleanField(required=False, default=False)
    same_thread = serializers.BooleanField(required=False, default=True)
    subject_template = serializers.CharField(max_length=998, required=False, allow_blank=True, trim_whitespace=False)
    body_template = serializers.CharField(max_length=100_000, trim_whitespace=False)

    class Meta:
        model = SequenceStep
        fields = [
            "id",
            "number",
            "delay_days",
            "business_days",
            "same_thread",
            "subject_template",
            "body_template",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "number", "created_at", "updated_at"]


class StepVariantSerializer(strict.ModelSerializer):
    step = serializers.IntegerField(min_value=1, max_value=100, required=False)
    label = serializers.RegexField(  # type: ignore[assignment]  # a field, not Field.label
        r"^[A-Za-z0-9_-]{1,32}$", help_text="A, B, … (letters, digits, - and _)."
    )
    weight = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    subject_template = serializers.CharField(max_length=998, required=False, allow_blank=True, trim_whitespace=False)
    body_template = serializers.CharField(max_length=100_000, trim_whitespace=False)

    class Meta:
        model = StepVariant
        fields = ["id", "step", "label", "subject_template", "body_template", "weight", "is_winner", "created_at"]
        read_only_fields = ["id", "is_winner", "created_at"]


_HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


@extend_schema_field({"type": "string", "pattern": _HH_MM, "example": "09:00"})
class WallClockField(serializers.Field):
    """A time of day in the window's zone, HH:MM (JSON Schema's "time" format would want an
    offset, which a wall-clock time in a named zone has not)."""

    default_error_messages = {"invalid": "A time of day written HH:MM, such as 09:00."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not re.fullmatch(_HH_MM, data):
            self.fail("invalid")
        hours, minutes = data.split(":")
        return time(int(hours), int(minutes))

    def to_representation(self, value):
        return value.strftime("%H:%M")


class SequenceSettingsSerializer(strict.ModelSerializer):
    start_time = WallClockField(required=False)
    end_time = WallClockField(required=False)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="Null until first saved.")
    days = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=6), required=False)
    holidays = serializers.ListField(child=serializers.DateField(), required=False)
    ab_winner_after = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False, allow_null=True)

    class Meta:
        model = SequenceSettings
        fields = list(sequence_services.SETTINGS_FIELDS) + ["updated_at"]
        read_only_fields = ["updated_at"]

    def validate_holidays(self, value):
        return [day.isoformat() for day in value]


class VariantFilter(FilterSet):
    step = django_filters.NumberFilter()

    class Meta:
        model = StepVariant
        fields = ["step"]


class CampaignScoped(CampaignResourceViewSet):
    """The campaign of the URL, the member's own or a 404; writes need the operate role
    (CanOperateOrganization, as every campaign sub-resource)."""

    def campaign(self):
        return self.get_campaign()


def _crud_docs(thing: str):
    return extend_schema_view(
        list=extend_schema(description=f"The campaign's {thing}s.", parameters=[CAMPAIGN_PK]),
        retrieve=extend_schema(description=f"One {thing} of the campaign.", parameters=[CAMPAIGN_PK]),
        create=extend_schema(
            description=f"Add a {thing} (owners and operators); templates are checked as the campaign's are.",
            parameters=[CAMPAIGN_PK],
        ),
        update=extend_schema(description=f"Replace a {thing}.", parameters=[CAMPAIGN_PK]),
        partial_update=extend_schema(description=f"Change some fields of a {thing}.", parameters=[CAMPAIGN_PK]),
        destroy=extend_schema(description=f"Delete a {thing}.", parameters=[CAMPAIGN_PK]),
    )


@_crud_docs("sequence step")
class SequenceStepViewSet(CampaignScoped, viewsets.ModelViewSet):
    serializer_class = SequenceStepSerializer
    pagination_class = None
    filter_backends: list = []
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no request
            return SequenceStep.objects.none()
        return SequenceStep.objects.filter(campaign=self.campaign()).order_by("number")

    def perform_create(self, serializer):
        serializer.instance = sequence_services.sequence_step_create(
            campaign=self.campaign(), actor=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = sequence_services.sequence_step_update(
            step=serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        sequence_services.sequence_step_delete(step=instance, actor=self.request.user)


@_crud_docs("A/B variant")
class StepVariantViewSet(CampaignScoped, viewsets.ModelViewSet):
    serializer_class = StepVariantSerializer
    filterset_class = VariantFilter
    pagination_class = None
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return StepVariant.objects.none()
        return StepVariant.objects.filter(campaign=self.campaign()).order_by("step", "label")

    def perform_create(self, serializer):
        serializer.instance = sequence_services.step_variant_create(
            campaign=self.campaign(), actor=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = sequence_services.step_variant_update(
            variant=serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        sequence_services.step_variant_delete(variant=instance, actor=self.request.user)


@extend_schema_view(
    retrieve=extend_schema(
        description="The campaign's sending window and stop rules (the defaults when never set).",
        parameters=[CAMPAIGN_PK],
    ),
    update=extend_schema(
        description="Set the sending window and stop rules (owners and operators, while the campaign is draft, "
        "scheduled or paused); fields left out keep their value.",
        parameters=[CAMPAIGN_PK],
    ),
    partial_update=extend_schema(
        description="Change some of the sending window and stop rules; the others keep their value.",
        parameters=[CAMPAIGN_PK],
    ),
)
class SequenceSettingsViewSet(CampaignScoped, viewsets.GenericViewSet):
    """One per campaign: a singleton resource (GET, PUT, PATCH on the collection's own URL)."""

    singleton = True

    serializer_class = SequenceSettingsSerializer
    pagination_class = None
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SequenceSettings.objects.none()
        return SequenceSettings.objects.filter(campaign=self.campaign())

    def get_object(self):
        """The campaign's settings, or the defaults when never set (no id in the URL)."""
        return self.get_queryset().first() or SequenceSettings(campaign=self.campaign())

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)

    def update(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        rules = sequence_services.sequence_settings_save(
            campaign=self.campaign(), actor=request.user, **serializer.validated_data
        )
        return Response(self.get_serializer(rules).data, status=status.HTTP_200_OK)

    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, **kwargs)


VariantStatsSerializer = inline_serializer(
    "VariantStats",
    {
        "metric": serializers.CharField(help_text="The metric variants are compared on (and a winner picked by)."),
        "steps": serializers.ListField(
            child=serializers.DictField(),
            help_text="Per step: its variants with sent, opens, clicks, replies, bounces, their rates, and "
            "versus_first (z, p_value, significant: a two-proportion z-test against the first variant).",
        ),
    },
)


@extend_schema_view(
    retrieve=extend_schema(
        description="Per step and A/B variant: sent, opens, clicks, replies and bounces with a significance test.",
        parameters=[CAMPAIGN_PK],
        responses=VariantStatsSerializer,
    )
)
class VariantStatsViewSet(CampaignScoped):
    """A singleton: the campaign's figures."""

    singleton = True

    def retrieve(self, request, *args, **kwargs):
        return Response(variant_stats(campaign_id=self.campaign().pk))


TimelineSerializer = inline_serializer(
    "RecipientTimeline",
    {
        "recipient": serializers.IntegerField(),
        "email": serializers.EmailField(),
        "status": serializers.CharField(),
        "step": serializers.IntegerField(help_text="The step it is on (being sent, or the last sent)."),
        "steps_total": serializers.IntegerField(),
        "next_send_at": serializers.DateTimeField(allow_null=True),
        "stopped_at": serializers.DateTimeField(allow_null=True),
        "stop_reason": serializers.CharField(),
        "entries": serializers.ListField(
            child=serializers.DictField(),
            help_text="Oldest first: {at, kind (sent, open, click, reply, auto_reply, bounce, unsubscribe, complain, "
            "stopped), step, …}.",
        ),
    },
)


@extend_schema_view(
    retrieve=extend_schema(
        description="One recipient's timeline: each step sent, opened, clicked, replied, and whether and why it "
        "stopped.",
        parameters=[CAMPAIGN_PK, OpenApiParameter("id", int, OpenApiParameter.PATH, description="Recipient id.")],
        responses=TimelineSerializer,
    )
)
class RecipientTimelineViewSet(CampaignScoped, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_value_regex = r"\d+"
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Recipient.objects.none()
        return Recipient.objects.filter(campaign=self.campaign())

    def retrieve(self, request, *args, **kwargs):
        pk = int(kwargs["pk"])
        recipient = self.get_queryset().filter(pk=pk).first() if pk < 2**63 else None
        if recipient is None:
            raise Http404("No recipient with that id in this campaign.")
        return Response(recipient_timeline(recipient=recipient))
