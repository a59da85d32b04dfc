"""Plug-ins are wired explicitly: job handlers, outreach launchers and settlers register by name in
AppConfig.ready(), a system check refuses a job type or channel without one, and the admin's
extra pages and campaign panels come through the AdminSite's documented hooks."""

from django.contrib import admin
from django.core.checks import run_checks

from campaigns.checks import plug_ins_check
from campaigns.models import Campaign
from campaigns.registry import JOB_HANDLERS, OUTREACH_LAUNCHERS, OUTREACH_SETTLERS, register
from campaigns.states import JobType
from campaigns_project.admin_site import BackOfficeAdminSite
from queue_control.counts import QUEUE_COUNTERS


def test_every_job_type_and_channel_is_served_and_the_check_passes():
    assert set(JobType.values) <= set(JOB_HANDLERS)
    assert set(Campaign.Channel.values) <= set(OUTREACH_LAUNCHERS) & set(OUTREACH_SETTLERS)
    assert [e for e in run_checks() if e.id == "campaigns.E001"] == []


def test_the_check_names_a_missing_launcher_and_handler(monkeypatch):
    monkeypatch.delitem(OUTREACH_LAUNCHERS, "smtp")
    monkeypatch.delitem(JOB_HANDLERS, JobType.SEND_EMAIL)
    errors = plug_ins_check()
    assert {e.id for e in errors} == {"campaigns.E001"}
    assert sorted(e.msg for e in errors) == [
        "The pipeline cannot run: channel 'smtp' has no outreach launcher.",
        "The pipeline cannot run: job type 'send_email' has no job handler.",
    ]
    assert [e for e in run_checks() if e.id == "campaigns.E001"] == errors


def test_a_name_registered_twice_is_refused(monkeypatch):
    monkeypatch.setitem(JOB_HANDLERS, "x", lambda *, job: {})
    try:
        register(job_handlers={"x": lambda *, job: {}})
    except ValueError as exc:
        assert "'x' is registered twice" in str(exc)
    else:
        raise AssertionError("a second handler for 'x' was accepted")


def test_the_admin_is_our_site_with_the_apps_pages_and_panels_in_order():
    assert isinstance(admin.site, BackOfficeAdminSite)
    names = [getattr(panel, "__name__", "") for panel in admin.site.campaign_panels()]
    assert names == ["job_counts_panel", "mailboxes_panel", "campaign_stats_panel", "campaign_sequence_panel"]
    routes = {getattr(p, "name", None) for p in admin.site.get_urls()}
    assert {"queue_control", "queue_control_pause", "live_dashboard", "live_dashboard_state"} <= routes
    assert set(QUEUE_COUNTERS) == {"campaigns"}


def test_nothing_monkeypatches_the_admin_site_or_appends_to_another_apps_list():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for path in [*root.glob("*/admin*.py"), *root.glob("*/apps.py")]:
        text = path.read_text()
        assert "admin.site.get_urls =" not in text, path
        assert "CAMPAIGN_PANELS" not in text, path
