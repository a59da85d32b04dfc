from typing import cast

from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import SandboxSetting
from .sandbox import sandbox_controls_forget


@admin.register(SandboxSetting)
class SandboxSettingAdmin(admin.ModelAdmin):
    list_display = ("service", "fail", "latency_ms")
    list_editable = ("fail", "latency_ms")
    list_filter = ("fail",)
    actions = ("inject_failure", "stop_injecting_failure")

    @admin.action(description="Inject failure")
    def inject_failure(self, request: HttpRequest, queryset: QuerySet[SandboxSetting]) -> None:
        self._set_fail(request, queryset, fail=True)

    @admin.action(description="Stop injecting failure")
    def stop_injecting_failure(self, request: HttpRequest, queryset: QuerySet[SandboxSetting]) -> None:
        self._set_fail(request, queryset, fail=False)

    def _set_fail(self, request: HttpRequest, queryset: QuerySet[SandboxSetting], *, fail: bool) -> None:
        services = ", ".join(str(setting) for setting in queryset)
        count = queryset.update(fail=fail)
        sandbox_controls_forget()
        verb = "now fail every call" if fail else "answer normally again"
        # The admin history is where operators look for who injected a failure, and when.
        LogEntry.objects.log_actions(cast(int, request.user.pk), queryset, CHANGE, f"Changed fail to {fail}.")
        self.message_user(request, f"{count} sandbox(es) {verb}: {services}.")
