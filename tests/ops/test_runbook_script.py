"""The reset-and-run runbook end to end, at small size, as an operator would run it."""

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "reset_and_run_concurrent_campaigns_test.sh"

pytestmark = pytest.mark.slow


def run_script(tmp_path, *args):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "TESTING", "REDIS_KEY_PREFIX", "INSTALLATION_ID")
    }
    env.update(
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",  # embedded default, away from the checkout
        # The suite's Redis, under an installation of its own: no test worker takes its tasks.
        REDIS_URL=settings.REDIS_URL,  # the suite's own (REDIS_URL, or test_settings' default)
        INSTALLATION_ID=f"runbook-{uuid.uuid4().hex[:8]}",
        ENV_FILE=str(tmp_path / "env"),  # not the checkout's own .run/env
        LOG_FILE=str(tmp_path / "smoke.log"),
        REPORT=str(tmp_path / "report.json"),
    )
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_help_explains_the_options_and_exit_codes(tmp_path):
    result = run_script(tmp_path, "--help")
    assert result.returncode == 0
    assert "--campaigns N" in result.stdout and "--compose" in result.stdout and "15 validation" in result.stdout


def test_bad_arguments_fail_in_the_prerequisites_phase(tmp_path):
    assert run_script(tmp_path, "--campaigns", "zero").returncode == 10


def test_the_runbook_resets_runs_and_validates_a_small_run(tmp_path):
    result = run_script(tmp_path, "--campaigns", "2", "--leads", "3")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output + (tmp_path / "smoke.log").read_text()
    for phase in ("[prerequisites]", "[log]", "[reset]", "[worker]", "[smoke-run]", "[validate]"):
        assert phase in output
    assert "campaigns completed: 2/2, leads: 6/6" in output
    assert (tmp_path / "report.json").exists()

    # After its reset the product is usable again: the demo organization and its admin are back
    # (the API would otherwise answer "you belong to several organizations (or none)").
    assert "[reset] seed_demo" in output and "Admin user: admin" in output
    check = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from campaigns.models import Membership; "
            "print(list(Membership.objects.values_list('user__username', 'organization__slug', 'role')))",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "TESTING")},
            "DEBUG": "true",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "ENV_FILE": str(tmp_path / "env"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "[('admin', 'demo', 'owner')]" in check.stdout, check.stdout + check.stderr
