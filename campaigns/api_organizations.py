"""The member's organizations: `/api/v1/organizations/` lists them with the caller's role, and
`PATCH /api/v1/organizations/{slug}/` lets an owner (or staff) change the name and the postal
address every message's footer carries (CAN-SPAM; an smtp campaign does not start without it).
Another organization's slug is a 404; operators and viewers read only (403 on a change)."""

from django.db.models import OuterRef, Subquery
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, viewsets

from campaigns_project import serializers as strict

from . import services
from .models import Membership, Organization
from .selectors import organizations_for_user


class OrganizationSerializer(strict.ModelSerializer):
    postal_address = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="Printed in the footer of every message (CAN-SPAM); required to start an smtp campaign.",
    )
    role = serializers.SerializerMethodField(help_text="Your role in it: owner, operator or viewer.")

    class Meta:
        model = Organization
        fields = ["slug", "name", "postal_address", "role", "created_at"]
        read_only_fields = ["slug", "created_at"]

    def get_role(self, obj) -> str:
        return getattr(obj, "caller_role", None) or ""


class IsOwnerToChange(permissions.BasePermission):
    message = "Only an owner of the organization may change it."

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in permissions.SAFE_METHODS or request.user.is_staff:
            return True
        return obj.memberships.filter(user=request.user, role=Membership.Role.OWNER).exists()


@extend_schema_view(
    list=extend_schema(description="Your organizations, each with your role in it."),
    retrieve=extend_schema(description="One of your organizations: its name, postal address and your role."),
    partial_update=extend_schema(
        description="Change the name or the postal address every message carries (owners and staff)."
    ),
)
class OrganizationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet
):
    serializer_class = OrganizationSerializer
    permission_classes = [permissions.IsAuthenticated, IsOwnerToChange]
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        user = self.request.user
        role = Membership.objects.filter(organization=OuterRef("pk"), user=user.pk).values("role")[:1]
        return organizations_for_user(user=user).annotate(caller_role=Subquery(role)).order_by("slug")

    def perform_update(self, serializer) -> None:
        serializer.instance = services.organization_update(
            organization=serializer.instance, actor=self.request.user, **serializer.validated_data
        )
