from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """For history and work rows the services write: operators read them, never edit them."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
