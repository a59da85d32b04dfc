"""The phase view and the transition of a campaign (issue 14, from the seeds):

- `GET /campaigns/{id}/phases`: the current phase and its status, every phase with its progress,
  counts and timings (from the CampaignPhase rows: no COUNT over leads), and the transitions
  available now;
- `PUT /campaigns/{id}/transition` with `{"target": <status>, "reason": …}`: the operator action
  of the action table that leads there from the current status (start or resume for running,
  pause, cancel, schedule, unschedule), performed by its service; refused with 409 and the
  allowed ones, as the actions' own endpoints are.
"""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from campaigns_project import serializers as strict
from campaigns_project.errors import ApplicationError

from . import services
from .api import CampaignSerializer
from .api_base import CampaignResourceViewSet
from .models import Campaign
from .selectors import campaign_progress
from .states import PHASE_ORDER, CampaignStatus, Phase, campaign_actions_allowed, campaign_allowed
from .transitions import action_refusal

WORKING_PHASES = PHASE_ORDER[:-1]
# What the current phase is doing, from the campaign's status.
PHASE_STATUS_FOR: dict[str, str] = {
    CampaignStatus.RUNNING: "running",
    CampaignStatus.PAUSED: "paused",
    CampaignStatus.FAILED: "failed",
    CampaignStatus.CANCELLED: "cancelled",
    CampaignStatus.COMPLETED: "completed",
}


class CampaignPhaseSerializer(serializers.Serializer):
    phase = serializers.ChoiceField(choices=[p.value for p in WORKING_PHASES])
    status = serializers.ChoiceField(
        choices=["pending", "running", "paused", "completed", "failed", "cancelled"],
        help_text="pending: not reached yet; completed: finished; otherwise what the current phase is doing.",
    )
    progress = serializers.IntegerField(min_value=0, max_value=100)
    jobs_total = serializers.IntegerField()
    jobs_finished = serializers.IntegerField()
    items_total = serializers.IntegerField(help_text="Leads (sourcing, verification, enrichment) or recipients.")
    items_done = serializers.IntegerField()
    items_passed = serializers.IntegerField(help_text="Done items that go on: leads stored, verified, enriched, sent.")
    items_failed = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True, help_text="Until now for the current phase.")


class TransitionOptionSerializer(serializers.Serializer):
    target = serializers.ChoiceField(choices=CampaignStatus.choices)
    action = serializers.CharField(help_text="The action of the action table that performs it.")


class CampaignPhasesSerializer(serializers.Serializer):
    campaign = serializers.UUIDField()
    status = serializers.ChoiceField(choices=CampaignStatus.choices)
    pause_cause = serializers.CharField(allow_null=True)
    current_phase = serializers.ChoiceField(choices=Phase.choices, allow_null=True)
    phase_status = serializers.ChoiceField(
        choices=["not_started", "pending", "running", "paused", "completed", "failed", "cancelled"]
    )
    progress = serializers.IntegerField(min_value=0, max_value=100, help_text="Overall.")
    phases = CampaignPhaseSerializer(many=True)
    available_transitions = TransitionOptionSerializer(many=True)


class TransitionSerializer(strict.Serializer):
    target = serializers.ChoiceField(choices=CampaignStatus.choices, help_text="The status to move to.")
    reason = serializers.CharField(max_length=500, required=False, help_text="Why, for the history.")
    scheduled_at = strict.DateTimeField(required=False, help_text="Required for target scheduled; in the future.")

    def validate_scheduled_at(self, value):
        if value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


def available_transitions(status: str) -> list[dict]:
    return [{"target": action.target, "action": action.name} for action in campaign_actions_allowed(status)]


def campaign_phases(*, campaign: Campaign, now=None) -> dict:
    """The phase view, from the campaign's phase rows (prefetch `phases` for many)."""
    now = now or timezone.now()
    rows = {row.phase: row for row in campaign.phases.all()}
    current = campaign.phase if campaign.phase in WORKING_PHASES else None
    phases: list[dict[str, Any]] = []
    for name in WORKING_PHASES:
        row = rows.get(name)
        if row is None:
            status = "pending"
        elif row.finished_at is not None:
            status = "completed"
        elif name == current:
            status = PHASE_STATUS_FOR.get(campaign.status, "pending")
        else:
            status = "pending"
        end = row.finished_at or (now if name == current else row.updated_at) if row is not None else None
        phases.append(
            {
                "phase": name,
                "status": status,
                "progress": row.progress if row is not None else 0,
                **{
                    field: getattr(row, field) if row is not None else 0
                    for field in (
                        "jobs_total",
                        "jobs_finished",
                        "items_total",
                        "items_done",
                        "items_passed",
                        "items_failed",
                    )
                },
                "started_at": row.started_at if row is not None else None,
                "finished_at": row.finished_at if row is not None else None,
                "duration_seconds": (
                    round((end - row.started_at).total_seconds(), 3) if row is not None and end is not None else None
                ),
            }
        )
    if not campaign.phase:
        phase_status = "not_started"
    elif campaign.phase == Phase.DONE:
        phase_status = "completed"
    else:
        phase_status = next(p["status"] for p in phases if p["phase"] == campaign.phase)
    return {
        "campaign": campaign.pk,
        "status": campaign.status,
        "pause_cause": campaign.pause_cause or None,
        "current_phase": campaign.phase or None,
        "phase_status": phase_status,
        "progress": campaign_progress(campaign=campaign)["overall"],
        "phases": phases,
        "available_transitions": available_transitions(campaign.status),
    }


class CampaignPhasesViewSet(CampaignResourceViewSet):
    pagination_class = None
    single_object = True  # one object at the collection route (campaigns_project.schema)
    filter_backends: list = []

    @extend_schema(responses=CampaignPhasesSerializer, operation_id="campaign_phases", tags=["campaigns"])
    def list(self, request, campaign_pk=None):
        """The current phase and its status, every phase with its progress, counts and timings, and
        the transitions available from the campaign's status."""
        campaign = self.get_campaign()
        return Response(CampaignPhasesSerializer(campaign_phases(campaign=campaign)).data)


def _refuse_target(campaign: Campaign, target: str) -> ApplicationError:
    options = available_transitions(campaign.status)
    allowed = ", ".join(f"{o['target']} ({o['action']})" for o in options) or "none (final)"
    return ApplicationError(
        f"Cannot move a {campaign.status} campaign to {target}. Allowed from {campaign.status}: {allowed}.",
        current_status=campaign.status,
        allowed_transitions=list(campaign_allowed(campaign.status)),
        allowed_actions=[o["action"] for o in options],
        available_transitions=options,
    )


class CampaignTransitionViewSet(CampaignResourceViewSet):
    """The transition verb of a campaign, registered at the `campaigns` prefix with the lookup
    `campaign_pk`: PUT campaigns/{campaign_pk}/transition."""

    lookup_url_kwarg = "campaign_pk"
    lookup_value_regex = "[^/.]+"

    @extend_schema(
        request=TransitionSerializer,
        responses={
            200: CampaignSerializer,
            409: OpenApiResponse(description="No action leads there from the current status, or its service refused."),
        },
        operation_id="campaign_transition",
        tags=["campaigns"],
    )
    @action(detail=True, methods=["put"])
    def transition(self, request, campaign_pk=None):
        """Move the campaign to `target` through the action that leads there from its status
        (start or resume → running, pause, cancel, schedule, unschedule), with `reason` kept in
        the history. The same checks as the action's own endpoint, the same 409 when refused."""
        campaign = self.get_campaign()  # CanOperateOrganization has checked the role
        body = TransitionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        target = body.validated_data["target"]
        action = next((a for a in campaign_actions_allowed(campaign.status) if a.target == target), None)
        if action is None:
            raise _refuse_target(campaign, target)
        kwargs = {"campaign_id": campaign.pk, "actor": request.user}
        reason = body.validated_data.get("reason", "")
        if action.name == "schedule":
            if "scheduled_at" not in body.validated_data:
                raise serializers.ValidationError({"scheduled_at": ["Required to move to scheduled."]})
            kwargs["scheduled_at"] = body.validated_data["scheduled_at"]
        elif "scheduled_at" in body.validated_data:
            raise serializers.ValidationError({"scheduled_at": ["Only for target scheduled."]})
        if reason:
            kwargs["reason"] = reason
        try:
            campaign = services.ACTION_SERVICES[action.name](**kwargs)
        except ApplicationError as exc:
            # The status moved between the read and the lock: answer as the action's endpoint would.
            if exc.extra.get("action") == action.name:
                raise action_refusal(Campaign.objects.get(pk=campaign.pk), action.name) from exc
            raise
        return Response(CampaignSerializer(campaign, context={"request": request}).data)
