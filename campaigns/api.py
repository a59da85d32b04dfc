"""Campaigns API: the campaign ViewSet (CRUD, the state machine's actions, history, details), thin
views that validate with a serializer, call one service, serialize the result. Its sub-resources
are ViewSets of their own on the same router (campaigns/urls.py)."""

import django_filters
from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from campaigns_project import serializers as strict
from campaigns_project.filters import FilterSet, IsoDateTimeFilter

from . import selectors, services
from .api_base import CanOperateOrganization, organization_for_create
from .jobs import job_counts
from .models import (
    CAMPAIGN_EMAIL_FIELDS,
    CAMPAIGN_IDENTITY_FIELDS,
    CAMPAIGN_SOURCE_FIELDS,
    CAMPAIGN_TIMESTAMP_FIELDS,
    Campaign,
    CampaignEvent,
    Organization,
)
from .pipeline import campaign_lead_stats
from .selectors import NOT_SYNCED_YET, instantly_analytics_get
from .states import (
    CampaignStatus,
    JobStatus,
    PauseKind,
    Phase,
    campaign_actions_allowed,
    campaign_allowed,
    pause_fields,
)


def validate_apollo_search_url(value: str) -> str:
    from integrations.apollo import parse_search_url

    try:
        parse_search_url(value)
    except ValueError as exc:
        raise serializers.ValidationError(str(exc))
    return value


class PauseFieldsSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=PauseKind.choices)
    service = serializers.CharField(allow_null=True, help_text="kind breaker: the service whose breaker opened.")
    mailbox = serializers.IntegerField(allow_null=True, help_text="The mailbox whose breaker or figures paused it.")
    figure = serializers.CharField(allow_null=True, help_text="kind deliverability: the figure that tripped the guard.")


class OrganizationSlugField(serializers.SlugRelatedField):
    """One of the requesting user's organizations, by slug. Another organization's slug and an
    unknown one get the same answer, so the answer does not tell which slugs exist."""

    default_error_messages = {
        "does_not_exist": "You have no organization with the slug {value}.",
        "invalid": "Expected an organization slug (a string).",
    }

    def get_queryset(self):
        request = self.context.get("request")
        if request is None:
            return Organization.objects.none()
        return selectors.organizations_for_user(user=request.user)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CampaignSerializer(strict.ModelSerializer):
    organization = OrganizationSlugField(
        slug_field="slug",
        required=False,
        help_text="Slug of one of your organizations; optional when you belong to exactly one. Set at creation only.",
    )
    phase = serializers.ChoiceField(
        choices=Phase.choices,
        allow_blank=True,
        read_only=True,
        help_text="Where in the pipeline; empty until the campaign starts.",
    )
    name = serializers.CharField(min_length=1, max_length=255, trim_whitespace=False)
    description = serializers.CharField(max_length=10_000, required=False, allow_blank=True, trim_whitespace=False)
    search_url = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        validators=[validate_apollo_search_url],  # type: ignore[list-item]  # DRF ignores a validator's return value
    )
    lead_count = serializers.IntegerField(min_value=1, max_value=settings.CAMPAIGN_MAX_LEAD_COUNT, required=False)
    from_email = serializers.EmailField(required=False, allow_blank=True)
    reply_to = serializers.EmailField(required=False, allow_blank=True)
    send_rate_per_minute = serializers.IntegerField(
        min_value=1, max_value=settings.CAMPAIGN_MAX_SEND_RATE_PER_MINUTE, required=False
    )
    allowed_transitions = serializers.SerializerMethodField(help_text="Statuses reachable from the current one.")
    allowed_actions = serializers.SerializerMethodField(
        help_text="Actions (start, schedule, unschedule, pause, resume, cancel) allowed from the current status."
    )
    pause_reason = serializers.CharField(
        source="pause_cause",
        read_only=True,
        help_text="Display only: manual, job, queue, breaker:<service>, deliverability:<figure>; empty unless paused.",
    )
    pause = serializers.SerializerMethodField(help_text="The pause cause as fields (kind, service, mailbox, figure).")
    progress = serializers.SerializerMethodField(help_text="Overall progress, 0-100: each working phase is a quarter.")
    phase_progress = serializers.SerializerMethodField(help_text="The current phase's own progress, 0-100.")

    class Meta:
        model = Campaign
        fields = [
            "id",
            *CAMPAIGN_IDENTITY_FIELDS,
            "status",
            "pause_reason",
            "pause",
            "phase",
            "progress",
            "phase_progress",
            "status_message",
            "status_error",
            "allowed_transitions",
            "allowed_actions",
            *CAMPAIGN_SOURCE_FIELDS,
            *CAMPAIGN_EMAIL_FIELDS,
            *CAMPAIGN_TIMESTAMP_FIELDS,
        ]
        read_only_fields = [f for f in services.STATE_FIELDS if f != "deleted_at"] + ["id"]

    @extend_schema_field(PauseFieldsSerializer(allow_null=True))
    def get_pause(self, obj: Campaign) -> dict | None:
        return pause_fields(obj)

    def get_progress(self, obj: Campaign) -> int:
        return selectors.campaign_progress(campaign=obj)["overall"]

    def get_phase_progress(self, obj: Campaign) -> int:
        return selectors.campaign_progress(campaign=obj)["phase"]

    def get_allowed_transitions(self, obj: Campaign) -> list[str]:
        return list(campaign_allowed(obj.status))

    def get_allowed_actions(self, obj: Campaign) -> list[str]:
        return [action.name for action in campaign_actions_allowed(obj.status)]


class CampaignUpdateSerializer(CampaignSerializer):
    """The same fields; `organization` is fixed once the campaign exists (the schema says so)."""

    # Redeclared read-only: DRF replaces the parent's field; the stubs see an incompatible class attribute.
    organization: serializers.SlugRelatedField[Organization] = serializers.SlugRelatedField(  # type: ignore[assignment]
        slug_field="slug", read_only=True
    )


class CampaignEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignEvent
        fields = ["action", "from_status", "to_status", "reason", "actor_label", "created_at"]


class CampaignFilter(FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=CampaignStatus.choices)
    phase = django_filters.MultipleChoiceFilter(choices=Phase.choices)
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Campaign
        fields = ["status", "phase", "channel", "created_after", "created_before"]


class AllowedActionSerializer(serializers.Serializer):
    action = serializers.CharField(help_text="POST /campaigns/{id}/{action}/ performs it.")
    target = serializers.CharField(help_text="The status the action leads to.")


class TransitionsSerializer(serializers.Serializer):
    status = serializers.CharField()
    allowed_transitions = serializers.ListField(
        child=serializers.CharField(),
        help_text="Statuses reachable from this one, including the pipeline's own (completed, failed).",
    )
    allowed_actions = AllowedActionSerializer(many=True, help_text="The operator actions allowed from this status.")


ActionBody = inline_serializer("CampaignActionBody", {"reason": serializers.CharField(required=False)})


class ReasonSerializer(strict.Serializer):
    reason = serializers.CharField(
        max_length=500, required=False, help_text="Why, in the operator's words (kept in the history)."
    )


class ResumeSerializer(strict.Serializer):
    acknowledge = serializers.BooleanField(
        required=False,
        help_text="Resume a deliverability pause although its figure is still above the threshold (recorded).",
    )


class NoBodySerializer(strict.Serializer):
    """The action takes no fields; any field sent is refused."""


class ScheduleSerializer(strict.Serializer):
    scheduled_at = strict.DateTimeField(help_text="When beat launches the campaign (must be in the future).")

    def validate_scheduled_at(self, value):
        if value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class LeadStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    with_email = serializers.IntegerField()
    enriched = serializers.IntegerField()
    sendable = serializers.IntegerField(help_text="valid or catch_all: the leads outreach mails")
    by_email_status = serializers.DictField(child=serializers.IntegerField())
    errors = serializers.IntegerField(help_text="failed jobs of this campaign")  # type: ignore[assignment]  # a field, not Serializer.errors


class CampaignDetailsSerializer(serializers.Serializer):
    campaign = CampaignSerializer()
    leads = LeadStatsSerializer()
    jobs = serializers.DictField(child=serializers.IntegerField(), help_text="job count per status")
    analytics = serializers.DictField(allow_null=True, help_text="Instantly's figures, when pushed there")
    analytics_synced_at = serializers.DateTimeField(allow_null=True)
    analytics_error = serializers.CharField(allow_null=True)


def _analytics(campaign: Campaign) -> dict:
    """Instantly's figures as the periodic sync last stored them, when, and why the last sync
    failed if it did. Never a call to Instantly: a GET must not reach a provider (the breaker)."""
    if not campaign.instantly_campaign_id:
        return {"analytics": None, "analytics_synced_at": None, "analytics_error": None}
    stored = instantly_analytics_get(campaign=campaign)
    if stored is None:
        return {"analytics": None, "analytics_synced_at": None, "analytics_error": NOT_SYNCED_YET}
    return {
        "analytics": stored.figures,
        "analytics_synced_at": stored.synced_at,
        "analytics_error": f"Instantly analytics are unavailable: {stored.error}" if stored.error else None,
    }


ConflictResponse = OpenApiResponse(description="Refused by the state machine or the queue; body names why.")


@extend_schema_view(
    list=extend_schema(description="Your organizations' live campaigns, filtered, searched by name and ordered."),
    create=extend_schema(
        description="Create a draft campaign in one of your organizations (owners and operators). "
        "`organization` may be left out when you belong to exactly one."
    ),
    retrieve=extend_schema(description="One campaign, with the actions allowed from its status."),
    update=extend_schema(description="Replace a campaign's content while it is draft, scheduled or paused."),
    partial_update=extend_schema(
        description="Change some of a campaign's fields while it is draft, scheduled or paused."
    ),
    destroy=extend_schema(
        description="Soft-delete a campaign (draft, scheduled or final; not running or paused). Its history stays."
    ),
)
class CampaignViewSet(viewsets.ModelViewSet):
    serializer_class = CampaignSerializer
    permission_classes = [permissions.IsAuthenticated, CanOperateOrganization]
    filterset_class = CampaignFilter
    search_fields = ["name"]
    ordering_fields = ["created_at", "updated_at", "name", "status"]
    ordering = ["-created_at"]
    lookup_value_regex = "[^/.]+"  # malformed ids reach get_object and answer 404, never 500

    def get_queryset(self):
        return (
            selectors.campaign_list_for_user(user=self.request.user)
            .select_related("organization")
            .prefetch_related("phases")
        )

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return CampaignUpdateSerializer
        return CampaignSerializer

    def get_object(self):
        campaign = selectors.campaign_get_for_user(user=self.request.user, campaign_id=self.kwargs["pk"])
        self.check_object_permissions(self.request, campaign)
        return campaign

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        organization = organization_for_create(
            user=self.request.user,
            organization=data.pop("organization", None),
            denied="Your role in this organization does not allow creating campaigns.",
        )
        serializer.instance = services.campaign_create(organization=organization, actor=self.request.user, **data)

    def perform_update(self, serializer):
        serializer.instance = services.campaign_update(
            campaign=serializer.instance, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.campaign_delete(campaign=instance, actor=self.request.user)

    @extend_schema(responses=TransitionsSerializer)
    @action(detail=True, methods=["get"])
    def transitions(self, request, pk=None):
        """The campaign's status and the statuses it may move to from there."""
        campaign = self.get_object()
        return Response(
            {
                "status": campaign.status,
                "allowed_transitions": list(campaign_allowed(campaign.status)),
                "allowed_actions": [
                    {"action": action.name, "target": action.target}
                    for action in campaign_actions_allowed(campaign.status)
                ],
            }
        )

    @extend_schema(responses=CampaignEventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """Every change of the campaign, newest first: who did what, from which status to which, and why."""
        campaign = self.get_object()
        page = self.paginate_queryset(campaign.events.all())
        return self.get_paginated_response(CampaignEventSerializer(page, many=True).data)

    @extend_schema(responses=CampaignDetailsSerializer, summary="A campaign with its lead, job and Instantly figures")
    @action(detail=True, methods=["get"])
    def details(self, request, pk=None):
        """The campaign, its lead figures (by email status, enriched, errors), its job counts, and
        Instantly's figures when it was pushed there, as the periodic sync stored them
        (`analytics_synced_at`). If the last sync failed, `analytics_error` says why and `analytics`
        holds the last figures read."""
        campaign = self.get_object()
        jobs = job_counts(campaign_id=campaign.pk)
        data = {
            "campaign": CampaignSerializer(campaign, context={"request": request}).data,
            "leads": {**campaign_lead_stats(campaign_id=campaign.pk), "errors": jobs[JobStatus.FAILED]},
            "jobs": jobs,
            **_analytics(campaign),
        }
        return Response(data)

    def _act(self, request, name: str):
        campaign = self.get_object()  # unsafe methods: CanOperateOrganization has checked the role
        kwargs = {"campaign_id": campaign.pk, "actor": request.user}
        bodies = {"pause": ReasonSerializer, "cancel": ReasonSerializer, "resume": ResumeSerializer}
        body = bodies.get(name, NoBodySerializer)(data=request.data)
        body.is_valid(raise_exception=True)
        if body.validated_data.get("reason"):
            kwargs["reason"] = body.validated_data["reason"]
        if body.validated_data.get("acknowledge"):
            kwargs["acknowledge"] = True
        campaign = services.ACTION_SERVICES[name](**kwargs)
        return Response(CampaignSerializer(campaign, context={"request": request}).data, status=status.HTTP_200_OK)

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: ConflictResponse})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Start the pipeline (from draft or scheduled), if the queue is active and every breaker closed."""
        return self._act(request, "start")

    @extend_schema(request=ScheduleSerializer, responses={200: CampaignSerializer, 409: ConflictResponse})
    @action(detail=True, methods=["post"])
    def schedule(self, request, pk=None):
        """Schedule the campaign: beat starts it once `scheduled_at` has passed."""
        campaign = self.get_object()
        body = ScheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        campaign = services.campaign_schedule(
            campaign_id=campaign.pk, actor=request.user, scheduled_at=body.validated_data["scheduled_at"]
        )
        return Response(CampaignSerializer(campaign, context={"request": request}).data)

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: ConflictResponse})
    @action(detail=True, methods=["post"])
    def unschedule(self, request, pk=None):
        """Take a scheduled campaign back to draft; beat will not start it."""
        return self._act(request, "unschedule")

    @extend_schema(request=ReasonSerializer, responses={200: CampaignSerializer, 409: ConflictResponse})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Pause a running campaign by hand; it resumes only by its own resume."""
        return self._act(request, "pause")

    @extend_schema(request=ResumeSerializer, responses={200: CampaignSerializer, 409: ConflictResponse})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Resume a campaign paused by hand, or by the deliverability guard (`acknowledge` while its
        figure is still above the threshold); one paused by the queue resumes with the queue, one
        paused by a mailbox with that mailbox."""
        return self._act(request, "resume")

    @extend_schema(request=ReasonSerializer, responses={200: CampaignSerializer, 409: ConflictResponse})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel the campaign and every job it has not finished. Final."""
        return self._act(request, "cancel")
