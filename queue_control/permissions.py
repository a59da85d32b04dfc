"""Who may change the queue and the breakers: the platform, never a tenant.

The queue latch and the breakers are shared by every organization, so pausing, resuming and
resetting need a platform permission: staff, or the `queue_control.operate_queue` permission an
admin grants (to an on-call integrator, say). Owners and operators of an organization read the
state and their own organization's counts only. The API and the admin page both ask here.
"""

OPERATE_QUEUE = "queue_control.operate_queue"
DENIED = (
    "Pausing, resuming and resetting breakers need the platform permission (staff, or queue_control.operate_queue)."
)


def user_can_operate_queue(user) -> bool:
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and (user.is_staff or user.has_perm(OPERATE_QUEUE))
    )


def organization_ids_visible_to(user) -> list | None:
    """The organizations whose counts `user` may read: None (all) for the platform."""
    if user_can_operate_queue(user):
        return None
    # Through the reverse relation, so queue_control does not import campaigns.
    return list(user.memberships.values_list("organization_id", flat=True))
