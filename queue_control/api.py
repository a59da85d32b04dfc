"""Queue management API: thin views over queue_control.services and selectors."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .breakers import CLOSED, OPEN, UNKNOWN

TAGS = ["queue-management"]


class CanControlQueue(permissions.BasePermission):
    """Anyone signed in reads; staff and organization owners or operators change the queue."""

    message = "Only staff, owners and operators may change the queue."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        user = request.user
        # Through the reverse relation, so queue_control does not import campaigns.
        return bool(user.is_staff or user.memberships.filter(role__in=("owner", "operator")).exists())


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
    reason = serializers.CharField(allow_blank=True, help_text="breaker:<service>, or the operator's reason.")
    changed_by = serializers.CharField(allow_blank=True)
    changed_at = serializers.DateTimeField()
    gate_open = serializers.BooleanField(help_text="What workers see right now (the Redis mirror of the latch).")
    can_resume = serializers.BooleanField()
    open_breakers = serializers.ListField(child=serializers.CharField())
    breakers = BreakerSerializer(many=True)
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="running_campaigns, paused_campaigns, pending_jobs, processing_jobs, paused_jobs.",
    )


class PauseSerializer(serializers.Serializer):
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


def _status_response() -> Response:
    return Response(QueueStatusSerializer(selectors.queue_status()).data)


class QueueView(APIView):
    permission_classes = [permissions.IsAuthenticated, CanControlQueue]


class QueueStatusView(QueueView):
    @extend_schema(responses=QueueStatusSerializer, operation_id="queue_status", tags=TAGS)
    def get(self, request):
        return _status_response()


class QueuePauseView(QueueView):
    @extend_schema(request=PauseSerializer, responses=QueueStatusSerializer, operation_id="queue_pause", tags=TAGS)
    def post(self, request):
        body = PauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.queue_pause(reason=body.validated_data.get("reason", ""), actor=request.user)
        return _status_response()


class QueueResumeView(QueueView):
    @extend_schema(
        request=None,
        responses={200: QueueStatusSerializer, 409: ResumeRefused},
        operation_id="queue_resume",
        tags=TAGS,
    )
    def post(self, request):
        services.queue_resume(actor=request.user)
        return _status_response()


class BreakerListView(QueueView):
    @extend_schema(responses=BreakerSerializer(many=True), operation_id="circuit_breakers_list", tags=TAGS)
    def get(self, request):
        return Response(BreakerSerializer(selectors.breakers_status(), many=True).data)


class BreakerResetView(QueueView):
    @extend_schema(
        request=None,
        responses={200: BreakerSerializer, 404: OpenApiResponse(description="No such service.")},
        operation_id="circuit_breaker_reset",
        tags=TAGS,
    )
    def post(self, request, service: str):
        if service not in settings.SERVICES:
            raise NotFound(f"No circuit breaker {service!r}; known: {', '.join(settings.SERVICES)}.")
        return Response(BreakerSerializer(services.breaker_reset(service=service, actor=request.user)).data)
