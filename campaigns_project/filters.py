"""The FilterSet every API filter derives from: its datetime filters refuse what PostgreSQL and
Python cannot take (see campaigns_project.datetimes) with a 400 naming the parameter."""

from datetime import UTC

import django_filters
from django import forms
from django.db import models
from django_filters.fields import IsoDateTimeField as _IsoDateTimeField
from django_filters.filterset import FILTER_FOR_DBFIELD_DEFAULTS

from .datetimes import storable_refusal


class IsoDateTimeField(_IsoDateTimeField):
    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return result
        refusal = storable_refusal(result)
        if refusal:
            raise forms.ValidationError(refusal, code="out_of_range")
        return result.astimezone(UTC) if result.tzinfo is not None else result


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = IsoDateTimeField


class FilterSet(django_filters.FilterSet):
    FILTER_DEFAULTS = {**FILTER_FOR_DBFIELD_DEFAULTS, models.DateTimeField: {"filter_class": IsoDateTimeFilter}}
