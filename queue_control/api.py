"""Queue management API: thin views over queue_control.services and selectors."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from campaigns_project import serializers as strict

from . import selectors, services
from .breakers import CLOSED, OPEN, UNKNOWN
from .permissions import DENIED, organization_ids_visible_to, user_can_operate_queue

TAGS = ["queue-management"]


class CanOperateQueue(permissions.BasePermission):
    """Anyone signed in reads the state; only the platform changes it (queue_control.permissions)."""

    message = DENIED

    def has_permission(self, request, view) -> bool:
        return request.method in permissions.SAFE_METHODS or user_can_operate_queue(request.user)


class BreakerSerializer(serializers.Serializer):
    service = serializers.CharField()
    state = serializers.ChoiceField(
        choices=[CLOSED, OPEN, UNKNOWN], help_text="unknown: Redis cannot be read; treated as open."
    )
    failures = serializers.IntegerField(help_text="Failures in the window (for an open breaker: those that opened it).")
    threshold = serializers.IntegerField()
    window = serializers.IntegerField(help_text="Seconds.")
    opened_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)


class QueueStatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["active", "paused"])
    reason = serializers.CharField(
        allow_blank=True, help_text="Display only: breaker:<service> for a breaker's pause, else the operator's reason."
    )
    cause_kind = serializers.ChoiceField(
        choices=["", "manual", "breaker"], allow_blank=True, help_text="Why it is paused; empty while active."
    )
    cause_service = serializers.CharField(allow_blank=True, help_text="The breaker's service, for cause_kind breaker.")
    changed_by = serializers.CharField(allow_blank=True)
    changed_at = serializers.DateTimeField()
    gate_open = serializers.BooleanField(help_text="What workers see right now (the Redis mirror of the latch).")
    can_resume = serializers.BooleanField()
    open_breakers = serializers.ListField(child=serializers.CharField())
    breakers = BreakerSerializer(many=True)
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="running_campaigns, paused_campaigns, pending_jobs, processing_jobs, paused_jobs: of every "
        "organization for the platform (staff, queue_control.operate_queue), of your own organizations otherwise.",
    )
    counts_scope = serializers.ChoiceField(choices=["all", "your organizations"])


class PauseSerializer(strict.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, trim_whitespace=True)

    def validate_reason(self, value: str) -> str:
        # "breaker:<service>" means a breaker paused the queue; an operator's pause must not pose as one.
        if value.startswith("breaker:"):
            raise serializers.ValidationError("Reasons starting with 'breaker:' are reserved for circuit breakers.")
        return value


ResumeRefused = OpenApiResponse(
    response=inline_serializer(
        "QueueResumeRefused",
        {"detail": serializers.CharField(), "open_breakers": serializers.ListField(child=serializers.CharField())},
    ),
    description="A circuit breaker is not closed; `detail` names each one. Nothing changed.",
)


def _status_response(request) -> Response:
    status = selectors.queue_status(organization_ids=organization_ids_visible_to(request.user))
    return Response(QueueStatusSerializer(status).data)


class NoBodySerializer(strict.Serializer):
    """No fields; any field sent is refused."""


class QueueViewSet(viewsets.GenericViewSet):
    """The queue latch: its status, pause and resume (queue-management/status, pause, resume-service)."""

    permission_classes = [permissions.IsAuthenticated, CanOperateQueue]
    pagination_class = None

    @extend_schema(responses=QueueStatusSerializer, operation_id="queue_status", tags=TAGS)
    @action(detail=False, methods=["get"])
    def status(self, request):
        """The queue latch, every circuit breaker, whether a resume is possible, and how much work is
        running and paused: everywhere for the platform, in your own organizations otherwise."""
        return _status_response(request)

    @extend_schema(request=PauseSerializer, responses=QueueStatusSerializer, operation_id="queue_pause", tags=TAGS)
    @action(detail=False, methods=["post"])
    def pause(self, request):
        """Pause the queue for every organization: running campaigns and their pending and processing
        jobs are paused, and nothing resumes by itself. Platform permission only."""
        body = PauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.queue_pause(reason=body.validated_data.get("reason", ""), actor=request.user)
        return _status_response(request)

    @extend_schema(
        request=None,
        responses={200: QueueStatusSerializer, 409: ResumeRefused},
        operation_id="queue_resume",
        tags=TAGS,
    )
    @action(detail=False, methods=["post"], url_path="resume-service")
    def resume_service(self, request):
        """Resume the queue: campaigns paused by the queue, a breaker or a job run again and their
        paused jobs are re-enqueued; campaigns paused by hand stay paused. Refused (409) while any
        breaker is not closed. Platform permission only."""
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        services.queue_resume(actor=request.user)
        return _status_response(request)


class BreakerViewSet(viewsets.GenericViewSet):
    """Every service's circuit breaker (queue-management/circuit-breakers), and its reset."""

    permission_classes = [permissions.IsAuthenticated, CanOperateQueue]
    pagination_class = None
    filter_backends: list = []
    lookup_field = "service"
    lookup_value_regex = "[^/.]+"

    @extend_schema(responses=BreakerSerializer(many=True), operation_id="circuit_breakers_list", tags=TAGS)
    def list(self, request):
        """Every service's circuit breaker: state, failures in the window, threshold, when it opened and why."""
        return Response(BreakerSerializer(selectors.breakers_status(), many=True).data)

    @extend_schema(
        request=None,
        responses={200: BreakerSerializer, 404: OpenApiResponse(description="No such service.")},
        operation_id="circuit_breaker_reset",
        tags=TAGS,
    )
    @action(detail=True, methods=["post"])
    def reset(self, request, service: str):
        """Close one service's breaker (failure count 0). Nothing else changes: the queue and its
        campaigns stay paused until a queue resume. Platform permission only."""
        NoBodySerializer(data=request.data).is_valid(raise_exception=True)
        if service not in settings.SERVICES:
            raise NotFound(f"No circuit breaker {service!r}; known: {', '.join(settings.SERVICES)}.")
        return Response(BreakerSerializer(services.breaker_reset(service=service, actor=request.user)).data)
