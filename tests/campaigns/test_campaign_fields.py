"""The Campaign's field groups are written once (campaigns/models.py) and every reader takes them
from there: a field added to the model without a group, or a group shown differently by the API
and the admin, fails here."""

from django.contrib import admin

from campaigns import models
from campaigns.api import CampaignSerializer
from campaigns.models import Campaign
from campaigns.services import IMMUTABLE_FIELDS, STATE_FIELDS

GROUPS = (
    models.CAMPAIGN_IDENTITY_FIELDS,
    models.CAMPAIGN_PAUSE_FIELDS,
    models.CAMPAIGN_SOURCE_FIELDS,
    models.CAMPAIGN_EMAIL_FIELDS,
    models.CAMPAIGN_TIMESTAMP_FIELDS,
)
# Shown by neither reader: a soft delete hides the campaign instead.
UNSHOWN = {"id", "deleted_at", "status", "phase", "status_message", "status_error"}


def test_every_field_of_the_model_is_in_a_group_or_named_as_unshown():
    grouped = [name for group in GROUPS for name in group]
    assert len(grouped) == len(set(grouped)), "a field is in two groups"
    assert {f.name for f in Campaign._meta.concrete_fields} == set(grouped) | UNSHOWN


def test_the_api_shows_every_group_and_the_admin_the_same_groups():
    api_fields = set(CampaignSerializer.Meta.fields)
    fieldsets = {title: set(options["fields"]) for title, options in admin.site._registry[Campaign].fieldsets}
    for group in GROUPS:
        if group is models.CAMPAIGN_PAUSE_FIELDS:
            continue  # the API shows the cause as one `pause` object
        assert set(group) <= api_fields, group
    assert fieldsets[None] == set(models.CAMPAIGN_IDENTITY_FIELDS)
    assert fieldsets["Lead source"] == set(models.CAMPAIGN_SOURCE_FIELDS)
    assert fieldsets["Email"] == set(models.CAMPAIGN_EMAIL_FIELDS)
    assert fieldsets["Timestamps"] == set(models.CAMPAIGN_TIMESTAMP_FIELDS)
    assert set(models.CAMPAIGN_PAUSE_FIELDS) <= fieldsets["State"]


def test_state_fields_are_read_only_in_both_readers_and_refused_by_the_update_service():
    read_only = set(CampaignSerializer.Meta.read_only_fields)
    assert {f for f in STATE_FIELDS if f != "deleted_at"} <= read_only
    assert set(STATE_FIELDS) <= set(admin.site._registry[Campaign].readonly_fields)
    assert STATE_FIELDS == models.CAMPAIGN_STATE_FIELDS and IMMUTABLE_FIELDS == ("organization",)
