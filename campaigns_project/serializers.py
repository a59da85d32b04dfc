"""Base serializers for every API request body.

- Fields a client may not send are refused, each named: unknown ones (`is_admin`, `foo`) and
  read-only ones (`status`). A silently ignored field hides a client's mistake.
- Datetime fields refuse offsets and instants PostgreSQL or Python cannot take (400, not 500).
- Strings with a NUL are refused by DRF's CharField already, and by the JSON parser before that.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING

from django.db import models
from rest_framework import serializers

from .datetimes import storable_refusal

# Sent by the browsable API's HTML forms, never a field.
IGNORED_KEYS = frozenset({"csrfmiddlewaretoken"})
UNKNOWN_FIELD = "Unknown field."
READ_ONLY_FIELD = "This field cannot be set."


class DateTimeField(serializers.DateTimeField):
    default_error_messages = {"unstorable": "{reason}"}

    def enforce_timezone(self, value):
        reason = storable_refusal(value)
        if reason:
            self.fail("unstorable", reason=reason)
        return super().enforce_timezone(value)


if TYPE_CHECKING:  # the mixin's place in the serializers' MRO, for the type checker only
    _SerializerBase = serializers.Serializer
else:
    _SerializerBase = object


class StrictFieldsMixin(_SerializerBase):
    def to_internal_value(self, data):
        refused = {}
        if isinstance(data, Mapping):
            for name in data:
                if name in IGNORED_KEYS:
                    continue
                field = self.fields.get(name)
                if field is None:
                    refused[name] = [UNKNOWN_FIELD]
                elif field.read_only:
                    refused[name] = [READ_ONLY_FIELD]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if refused and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**exc.detail, **refused}) from None
            raise
        if refused:
            raise serializers.ValidationError(refused)
        return value


class Serializer(StrictFieldsMixin, serializers.Serializer):
    pass


class ModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.DateTimeField: DateTimeField,
    }


def strict_inline_serializer(name: str, fields: dict, **kwargs) -> Serializer:
    """Like drf-spectacular's inline_serializer, for request bodies: strict like every other."""
    return type(name, (Serializer,), dict(fields))(**kwargs)
