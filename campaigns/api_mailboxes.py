"""The organization's sender mailboxes: `/api/v1/mailboxes/` (a top-level ViewSet on the router),
scoped to the member's organizations (404 for another's), written by owners and operators,
read by viewers. Passwords are write-only: no answer ever carries them, only whether one is set.
Actions: `pause-state` is read from the list; `resume` (with `acknowledge` for a deliverability
pause), `reset-breaker`."""

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from campaigns_project import serializers as strict
from campaigns_project.filters import FilterSet
from queue_control import breakers
from queue_control.selectors import breaker_state

from . import mailboxes, selectors
from .api import OrganizationSlugField
from .api_base import CanOperateOrganization, organization_for_create
from .models import Campaign, Mailbox, Organization


def mailboxes_for_user(*, user):
    if not user.is_authenticated:
        return Mailbox.objects.none()
    return Mailbox.objects.filter(organization__memberships__user=user)


class CampaignIdsField(serializers.PrimaryKeyRelatedField):
    """Campaign ids of the member's organizations (others are refused as unknown)."""

    def get_queryset(self):
        request = self.context.get("request")
        return selectors.campaign_list_for_user(user=request.user) if request else Campaign.objects.none()


class MailboxSerializer(strict.ModelSerializer):
    organization = OrganizationSlugField(
        slug_field="slug", required=False, help_text="One of your organizations; optional when you belong to one."
    )
    smtp_password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=1000, trim_whitespace=False,
        help_text="Write-only; stored encrypted. Left out on update: unchanged.",
    )  # fmt: skip
    imap_password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=1000, trim_whitespace=False,
        help_text="Write-only; stored encrypted. Left out on update: unchanged.",
    )  # fmt: skip
    smtp_password_set = serializers.SerializerMethodField(help_text="Whether an SMTP password is stored.")
    imap_password_set = serializers.SerializerMethodField(help_text="Whether an IMAP password is stored.")
    campaigns = CampaignIdsField(many=True, required=False, help_text="The campaigns that send from this mailbox.")
    cap_today = serializers.SerializerMethodField(help_text="Today's cap (UTC): the ramp-up's figure, ≤ daily_cap.")
    breaker_state = serializers.SerializerMethodField(help_text="Its own SMTP breaker: closed, open or unknown.")
    pause_kind = serializers.CharField(
        read_only=True, help_text="Its pause latch: empty (not paused), breaker or deliverability."
    )
    pause_figure = serializers.CharField(read_only=True, help_text="What paused it (the error or the figure).")

    class Meta:
        model = Mailbox
        fields = [
            "id",
            "organization",
            *mailboxes.MAILBOX_FIELDS,
            "smtp_password",
            "imap_password",
            "smtp_password_set",
            "imap_password_set",
            "campaigns",
            "cap_today",
            "pause_kind",
            "pause_figure",
            "paused_at",
            "breaker_state",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "pause_kind", "pause_figure", "paused_at", "created_at", "updated_at"]
        # The organization is often implied (a member of one): uniqueness of the name within it
        # is checked by the service (full_clean), and answered as an error on `name`.
        validators: list = []
        extra_kwargs = {
            "daily_cap": {"min_value": 1, "max_value": 100_000},
            "smtp_port": {"min_value": 1, "max_value": 65535},
            "imap_port": {"min_value": 1, "max_value": 65535},
            "ramp_start_cap": {"max_value": 100_000},
            "ramp_daily_increase": {"max_value": 100_000},
            "min_gap_seconds": {"max_value": 86_400},
        }

    def get_smtp_password_set(self, obj: Mailbox) -> bool:
        return bool(obj.smtp_password_encrypted)

    def get_imap_password_set(self, obj: Mailbox) -> bool:
        return bool(obj.imap_password_encrypted)

    def get_cap_today(self, obj: Mailbox) -> int:
        return obj.cap_on()

    def get_breaker_state(self, obj: Mailbox) -> str:
        return breaker_state(breakers.mailbox_breaker(obj.pk))


class MailboxUpdateSerializer(MailboxSerializer):
    # Redeclared read-only: DRF replaces the parent's field; the stubs see an incompatible class attribute.
    organization: serializers.SlugRelatedField[Organization] = serializers.SlugRelatedField(  # type: ignore[assignment]
        slug_field="slug", read_only=True
    )


class MailboxResumeSerializer(strict.Serializer):
    acknowledge = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Resume although the deliverability figure is still above its threshold (recorded).",
    )


class MailboxFilter(FilterSet):
    active = django_filters.BooleanFilter()
    paused = django_filters.BooleanFilter(method="filter_paused")
    organization = django_filters.CharFilter(field_name="organization__slug")

    class Meta:
        model = Mailbox
        fields = ["active", "paused", "organization"]

    def filter_paused(self, queryset, name, value):
        return queryset.exclude(pause_kind="") if value else queryset.filter(pause_kind="")


def _service_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    if not hasattr(exc, "error_dict"):
        return serializers.ValidationError({"detail": exc.messages})
    errors = dict(exc.message_dict)
    if "__all__" in errors:  # the one model-wide rule: a name unique within the organization
        errors["name"] = errors.pop("__all__")
    return serializers.ValidationError(errors)


@extend_schema_view(
    list=extend_schema(description="Your organizations' sender mailboxes (passwords never shown)."),
    create=extend_schema(description="Add a sender mailbox (owners and operators)."),
    retrieve=extend_schema(description="One mailbox: its settings, today's cap, its pause latch and breaker."),
    update=extend_schema(description="Replace a mailbox's settings; passwords left out stay as they are."),
    partial_update=extend_schema(description="Change some of a mailbox's settings."),
    destroy=extend_schema(description="Delete a mailbox no recipient was given (else 409: set it inactive)."),
)
class MailboxViewSet(viewsets.ModelViewSet):
    serializer_class = MailboxSerializer
    permission_classes = [permissions.IsAuthenticated, CanOperateOrganization]
    filterset_class = MailboxFilter
    search_fields = ["name", "from_email"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    lookup_value_regex = "[^/.]+"  # malformed ids answer 404, never 500

    def get_queryset(self):
        return mailboxes_for_user(user=self.request.user).select_related("organization").prefetch_related("campaigns")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return MailboxUpdateSerializer
        if self.action == "resume":
            return MailboxResumeSerializer
        return MailboxSerializer

    def get_object(self):
        pk = self.kwargs["pk"]
        mailbox = self.get_queryset().filter(pk=int(pk)).first() if str(pk).isdigit() and len(str(pk)) < 19 else None
        if mailbox is None:
            raise Http404("No mailbox with that id.")
        self.check_object_permissions(self.request, mailbox)
        return mailbox

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        organization = organization_for_create(
            user=self.request.user,
            organization=data.pop("organization", None),
            denied="Your role in this organization does not allow adding mailboxes.",
        )
        try:
            serializer.instance = mailboxes.mailbox_create(organization=organization, actor=self.request.user, **data)
        except DjangoValidationError as exc:
            raise _service_errors(exc) from None

    def perform_update(self, serializer):
        try:
            with transaction.atomic():
                serializer.instance = mailboxes.mailbox_update(
                    mailbox=serializer.instance, actor=self.request.user, **serializer.validated_data
                )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from None

    def perform_destroy(self, instance):
        mailboxes.mailbox_delete(mailbox=instance, actor=self.request.user)

    @extend_schema(
        request=MailboxResumeSerializer,
        responses=MailboxSerializer,
        description="Clear the mailbox's pause latch and wake the campaigns it paused. 409 while its breaker "
        "is not closed, or while the deliverability figure is above its threshold without `acknowledge`.",
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        mailbox = self.get_object()
        body = MailboxResumeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        mailbox = mailboxes.mailbox_resume(
            mailbox_id=mailbox.pk, actor=request.user, acknowledge=body.validated_data["acknowledge"]
        )
        return Response(MailboxSerializer(mailbox, context=self.get_serializer_context()).data)

    @extend_schema(
        request=None,
        responses=MailboxSerializer,
        description="Close the mailbox's SMTP breaker. The mailbox and its campaigns stay paused until resumed.",
    )
    @action(detail=True, methods=["post"], url_path="reset-breaker")
    def reset_breaker(self, request, pk=None):
        mailbox = self.get_object()
        mailboxes.mailbox_breaker_reset(mailbox_id=mailbox.pk, actor=request.user)
        mailbox.refresh_from_db()
        return Response(MailboxSerializer(mailbox, context=self.get_serializer_context()).data, status.HTTP_200_OK)
