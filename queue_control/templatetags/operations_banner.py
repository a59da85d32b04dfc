"""The banner every admin page shows an operator while work is stopped or about to be: the queue
paused, a circuit breaker not closed, a sandbox set to fail every call."""

from django import template
from django.conf import settings

from integrations.models import SandboxSetting

from ..models import QueueState
from ..selectors import breakers_not_closed

register = template.Library()


@register.inclusion_tag("admin/operations_banner.html", takes_context=True)
def operations_banner(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return {"show": False}  # the login page, or not an operator
    latch = QueueState.get()
    breakers = breakers_not_closed()
    switches = list(SandboxSetting.objects.filter(fail=True).values_list("service", flat=True))
    return {
        "show": True,
        "paused": not latch.is_active,
        "latch": latch,
        "breakers": breakers,
        "failing_switches": switches,
        "failing_env": list(settings.SANDBOX_FAIL),
    }
