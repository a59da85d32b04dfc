"""Admin pages of live operations: the dashboard's URLs, and the outgoing webhook endpoints and
their delivery log (replay as an action). Imported by tracking/admin.py."""

from django.contrib import admin, messages

from campaigns_project.errors import ApplicationError

from . import outbound
from .models import WebhookDelivery, WebhookEndpoint


class DeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = ["id", "event", "status", "attempts", "last_status_code", "last_error", "last_attempt_at", "delivered_at"]
    readonly_fields = fields  # type: ignore[assignment]  # the same names; the stubs type the two lists differently
    ordering = ["-id"]
    max_num = 0
    show_change_link = True
    verbose_name_plural = "Recent deliveries (all in Webhook deliveries)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("event")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "organization", "is_active", "consecutive_failures", "failing_since", "last_success_at"]
    list_filter = ["is_active", "organization"]
    list_select_related = ["organization"]
    search_fields = ["url", "description"]
    readonly_fields = [
        "secret",
        "disabled_at",
        "disabled_reason",
        "failing_since",
        "consecutive_failures",
        "retry_at",
        "last_success_at",
        "last_failure_at",
        "created_by",
        "created_at",
        "updated_at",
    ]
    fields = ["organization", "url", "description", "event_types", "is_active", *readonly_fields]
    actions = ["send_test"]

    def save_model(self, request, obj, form, change):
        # Through the services: re-enabling clears the failure record, the cache is refreshed.
        if change:
            data = {name: form.cleaned_data[name] for name in form.changed_data}
            outbound.endpoint_update(endpoint=obj, **data)
        else:
            created = outbound.endpoint_create(
                organization=obj.organization,
                url=obj.url,
                event_types=obj.event_types,
                description=obj.description,
                actor=request.user,
            )
            obj.pk = created.pk

    @admin.action(description="Send a test event")
    def send_test(self, request, queryset):
        sent = 0
        for endpoint in queryset:  # one event per endpoint chosen: a handful
            try:
                outbound.endpoint_test(endpoint=endpoint)
                sent += 1
            except ApplicationError as exc:
                self.message_user(request, f"{endpoint.url}: {exc.message}", messages.ERROR)
        if sent:
            self.message_user(request, f"Test event queued for {sent} endpoint(s).")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event_type", "endpoint", "status", "attempts", "last_status_code", "last_attempt_at"]
    list_filter = ["status", "event__type"]
    list_select_related = ["endpoint", "event"]
    search_fields = ["endpoint__url", "event__id"]
    readonly_fields = [
        "event",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "retry_until",
        "last_attempt_at",
        "delivered_at",
        "last_status_code",
        "last_response",
        "last_error",
        "created_at",
        "payload",
    ]
    fields = readonly_fields  # type: ignore[assignment]  # the same names; the stubs type the two lists differently
    actions = ["replay"]

    @admin.display(description="event", ordering="event__type")
    def event_type(self, delivery: WebhookDelivery) -> str:
        return delivery.event.type

    @admin.display(description="payload")
    def payload(self, delivery: WebhookDelivery) -> dict:
        return delivery.event.body()

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Replay (send again, same event id)")
    def replay(self, request, queryset):
        replayed = 0
        for delivery in queryset.select_related("endpoint"):  # an operator's selection: one page at most
            try:
                outbound.delivery_replay(delivery=delivery)
                replayed += 1
            except ApplicationError as exc:
                self.message_user(request, f"Delivery {delivery.pk}: {exc.message}", messages.ERROR)
        if replayed:
            self.message_user(request, f"{replayed} deliver{'y' if replayed == 1 else 'ies'} queued again.")
