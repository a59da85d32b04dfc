from django.http import HttpRequest
from django.utils.html import format_html


def truncated(text: str, length: int) -> str:
    """A list cell that keeps the column narrow: the first `length` characters, the whole text on
    hover. Escaped like every admin cell."""
    text = text or ""
    if len(text) <= length:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: length - 1])


class ReadOnlyAdminMixin:
    """For history and work rows the services write: operators read them, never edit them."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
