import uuid

from django.db.models import QuerySet
from django.http import Http404

from .models import Campaign, Organization


def organizations_for_user(*, user) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=user)


def campaign_list_for_user(*, user) -> QuerySet[Campaign]:
    """Every API query starts here: a user sees only their organizations' live campaigns."""
    if not user.is_authenticated:
        return Campaign.objects.none()
    return Campaign.objects.alive().filter(organization__memberships__user=user)


def campaign_get_for_user(*, user, campaign_id) -> Campaign:
    """The campaign, or Http404 for an unknown, malformed, deleted or other organization's id."""
    try:
        pk = uuid.UUID(str(campaign_id))
    except ValueError:
        raise Http404("No campaign with that id.")
    try:
        return campaign_list_for_user(user=user).get(pk=pk)
    except Campaign.DoesNotExist:
        raise Http404("No campaign with that id.")


def user_can_operate(*, user, organization_id) -> bool:
    """Owners and operators change things; viewers only read."""
    if user.is_staff:
        return True
    return user.memberships.filter(organization_id=organization_id, role__in=("owner", "operator")).exists()
