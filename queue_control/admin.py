"""The operators' Queue control page (inside the admin, staff only) and the read-only history."""

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from campaigns_project.admin import ReadOnlyAdminMixin
from campaigns_project.errors import ApplicationError

from . import selectors, services
from .models import QueueEvent
from .permissions import DENIED, user_can_operate_queue


@admin.register(QueueEvent)
class QueueEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "kind", "service", "reason", "actor_label"]
    list_filter = ["kind", "service"]
    search_fields = ["reason", "actor_label"]
    list_select_related = ["actor"]
    date_hierarchy = "created_at"
    readonly_fields = ["kind", "service", "reason", "actor", "actor_label", "created_at", "details"]


def _back() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:queue_control"))


def queue_control_view(request: HttpRequest) -> HttpResponse:
    status = selectors.queue_status()  # the admin is the platform's: every organization's counts
    context = {
        **admin.site.each_context(request),
        "title": "Queue control",
        "status": status,
        "can_operate_queue": user_can_operate_queue(request.user),
        "history": selectors.queue_history(limit=25),
    }
    return TemplateResponse(request, "queue_control/admin/queue_control.html", context)


def _require_queue_operator(view):
    """The admin's buttons obey the same rule as the API (queue_control.permissions)."""

    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not user_can_operate_queue(request.user):
            raise PermissionDenied(DENIED)
        return view(request, *args, **kwargs)

    wrapped.__name__ = wrapped.__qualname__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


@require_POST
@_require_queue_operator
def queue_pause_view(request: HttpRequest) -> HttpResponse:
    reason = request.POST.get("reason", "").strip()[:500]
    if reason.startswith("breaker:"):  # as in the API: an operator's pause must not pose as a breaker's
        messages.error(request, "Reasons starting with 'breaker:' are reserved for circuit breakers.")
        return _back()
    if request.POST.get("confirmed") != "yes":
        # Pausing stops every organization's campaigns at once: ask first, saying how much it stops.
        context = {
            **admin.site.each_context(request),
            "title": "Pause the queue?",
            "reason": reason,
            "counts": selectors.queue_counts(),
        }
        return TemplateResponse(request, "queue_control/admin/queue_pause_confirm.html", context)
    services.queue_pause(reason=reason, actor=request.user)
    messages.success(request, "Queue paused: running campaigns and their pending jobs are paused.")
    return _back()


@require_POST
@_require_queue_operator
def queue_resume_view(request: HttpRequest) -> HttpResponse:
    try:
        services.queue_resume(actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Queue resumed: campaigns paused by the queue are running again.")
    return _back()


@require_POST
@_require_queue_operator
def breaker_reset_view(request: HttpRequest, service: str) -> HttpResponse:
    if service not in settings.SERVICES:
        raise Http404(f"No circuit breaker {service!r}")
    try:
        services.breaker_reset(service=service, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Circuit breaker {service} reset to closed. The queue stays paused until you resume it."
        )
    return _back()


def queue_control_urls() -> list:
    view = admin.site.admin_view  # staff only, redirects anonymous users to the admin login
    return [
        path("queue-control/", view(queue_control_view), name="queue_control"),
        path("queue-control/pause/", view(queue_pause_view), name="queue_control_pause"),
        path("queue-control/resume/", view(queue_resume_view), name="queue_control_resume"),
        path("queue-control/breakers/<str:service>/reset/", view(breaker_reset_view), name="queue_control_reset"),
    ]
