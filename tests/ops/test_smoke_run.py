import io
import json

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import call_command

from campaigns.models import Campaign, Job
from campaigns_project.celery import app
from queue_control.models import QueueState
from tests.breakers import breaker_trip

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def worker():
    app.control.purge()  # messages left by earlier tests must not wake this run's jobs
    with start_worker(app, perform_ping_check=False, pool="threads", concurrency=4, loglevel="WARNING"):
        yield


def smoke(tmp_path, *extra):
    report = tmp_path / "report.json"
    out = io.StringIO()
    code = 0
    try:
        call_command(
            "run_concurrent_campaigns",
            "--campaigns=3",
            "--leads=5",
            "--poll=0.3",
            "--settle=0.5",
            "--timeout=90",
            f"--json={report}",
            *extra,
            stdout=out,
            stderr=out,
        )
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue(), (json.loads(report.read_text()) if report.exists() else None)


def test_a_small_smoke_run_completes_with_a_correct_report(worker, tmp_path):
    code, output, report = smoke(tmp_path)
    assert code == 0, output
    assert report["outcome"] == "completed"
    assert report["totals"]["campaigns"] == 3
    assert report["totals"]["by_status"] == {"completed": 3}
    assert report["totals"]["leads"] == 15
    assert report["totals"]["jobs"] == Job.objects.count()
    assert report["totals"]["jobs_completed"] + Job.objects.exclude(status="completed").count() == Job.objects.count()
    assert report["totals"]["jobs_per_second"] > 0
    assert all(c["phase"] == "done" and c["leads"] == 5 for c in report["campaigns"])
    assert Campaign.objects.filter(status="completed").count() == 3
    assert "Concurrent campaigns report" in output and "jobs/s" in output


def test_a_breaker_opening_mid_run_stops_it_with_exit_3_and_reports_the_pause(worker, tmp_path, settings):
    settings.SANDBOX_FAIL = ["millionverifier"]
    settings.BREAKERS = {**settings.BREAKERS, "millionverifier": {"threshold": 1, "window": 60}}
    code, output, report = smoke(tmp_path)
    assert code == 3, output
    assert report["outcome"] == "paused"
    assert report["pause"]["queue_state"] == "paused"
    assert report["pause"]["reason"] == "breaker:millionverifier"
    assert len(report["pause"]["campaigns"]) == 3
    assert {b["service"]: b["state"] for b in report["breakers"]}["millionverifier"] == "open"
    assert QueueState.get().state == "paused"
    assert not Campaign.objects.filter(status="running").exists()
    assert "Pause: queue paused (breaker:millionverifier)" in output


def test_pre_flight_refuses_while_a_breaker_is_open(tmp_path):
    breaker_trip(service="apollo", error="boom")
    code, output, report = smoke(tmp_path)
    assert code == 2
    assert "Pre-flight failed" in output and "apollo" in output
    assert Campaign.objects.count() == 0
    assert report is None
