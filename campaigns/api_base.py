"""What every API ViewSet of the product shares: who may operate an organization, and the base of
a campaign's sub-resources.

A campaign's sub-resource is a ViewSet registered on the router at
`campaigns/(?P<campaign_pk>[^/.]+)/<resource>` (campaigns/urls.py): it finds the campaign within
the user's organizations (another organization's, or a malformed id, is a 404), and
`CanOperateOrganization` lets viewers read and owners and operators change things (403)."""

from rest_framework import permissions, serializers, viewsets
from rest_framework.exceptions import PermissionDenied

from .models import Campaign, Organization
from .selectors import campaign_get_for_user, organizations_for_user, user_can_operate

OPERATE_DENIED = "Your role in this organization does not allow changes."


def organization_for_create(*, user, organization: Organization | None, denied: str = OPERATE_DENIED) -> Organization:
    """The organization a new object goes to: the one named, or the user's only one (400 naming
    `organization` when they have several or none); 403 unless the user may operate it."""
    if organization is None:
        organizations = list(organizations_for_user(user=user)[:2])
        if len(organizations) != 1:
            raise serializers.ValidationError(
                {"organization": ["Required: you belong to several organizations (or none)."]}
            )
        organization = organizations[0]
    if not user_can_operate(user=user, organization_id=organization.pk):
        raise PermissionDenied(denied)
    return organization


def organization_id_of(obj) -> int:
    """The organization an object belongs to: its own, or its campaign's, or its endpoint's."""
    for path in ("organization_id", "campaign.organization_id", "endpoint.organization_id"):
        value = obj
        try:
            for name in path.split("."):
                value = getattr(value, name)
        except AttributeError:
            continue
        return value
    raise TypeError(f"No organization for {obj!r}")


class CanOperateOrganization(permissions.BasePermission):
    """May this user operate this organization? Anyone of it reads; owners and operators write.

    The organization is the object's (`has_object_permission`) or, before the handler runs, the one
    the view names with `permission_organization_id()` (a campaign's sub-resources: the campaign's)."""

    message = OPERATE_DENIED

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        named = getattr(view, "permission_organization_id", None)
        return named is None or user_can_operate(user=request.user, organization_id=named())

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return user_can_operate(user=request.user, organization_id=organization_id_of(obj))


class CampaignResourceViewSet(viewsets.GenericViewSet):
    """Base of a campaign's sub-resources (router prefix `campaigns/(?P<campaign_pk>[^/.]+)/…`)."""

    permission_classes = [permissions.IsAuthenticated, CanOperateOrganization]
    _campaign: Campaign | None = None

    def get_campaign(self) -> Campaign:
        if self._campaign is None:
            self._campaign = campaign_get_for_user(user=self.request.user, campaign_id=self.kwargs["campaign_pk"])
        return self._campaign

    def permission_organization_id(self) -> int:
        return self.get_campaign().organization_id
