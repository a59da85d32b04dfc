import uuid

from django.db.models import QuerySet
from django.http import Http404

from .models import Campaign, InstantlyAnalytics, Organization
from .states import PHASE_ORDER, Phase


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


def campaign_progress(*, campaign: Campaign) -> dict[str, int]:
    """The campaign's overall progress (0-100: each working phase is a quarter of the way) and
    its current phase's own, from the phase counters (prefetch `phases` for a list)."""
    if campaign.phase == Phase.DONE:
        return {"overall": 100, "phase": 100}
    phases = {row.phase: row for row in campaign.phases.all()}
    working = PHASE_ORDER[:-1]
    overall = 0.0
    for name in working:
        row = phases.get(name)
        if row is not None:
            overall += row.progress / 100
    current = phases.get(campaign.phase)
    return {"overall": int(overall * 100 / len(working)), "phase": current.progress if current else 0}


NOT_SYNCED_YET = "Instantly's figures have not been synced yet (the sync runs every 15 minutes)."


def instantly_analytics_get(*, campaign: Campaign) -> InstantlyAnalytics | None:
    """What the periodic sync last stored of Instantly's figures for this campaign, if anything."""
    return InstantlyAnalytics.objects.filter(campaign=campaign).first()
