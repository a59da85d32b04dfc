"""Fuzz the API with schemathesis against a live server: its own fresh database with the demo data,
gunicorn on its own free port, real HTTP, authenticated as the demo user (and the webhooks signed
as their providers sign: scripts/fuzz_hooks.py).

    .venv/bin/python scripts/fuzz.py                      # what `make test` runs (tests/test_fuzz.py)
    .venv/bin/python scripts/fuzz.py --max-examples 200 --stateful --workers 2   # `make fuzz`

Checks: not_a_server_error, response_schema_conformance, status_code_conformance,
content_type_conformance. Exit status 0 only when schemathesis reports no failure and no error.
The database is `<DATABASE_URL's name>_fuzz`, dropped afterwards; Redis keys are under
`<REDIS_KEY_PREFIX>fuzz:`; Celery messages go to an in-memory broker (nothing runs them).
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"

DEMO_DATA = """
from campaigns.models import Campaign, Lead
from tracking.models import EmailEvent, Recipient
from django.utils import timezone
campaign = Campaign.objects.order_by("created_at").first()
lead = Lead.objects.create(campaign=campaign, email="lee@example.org", first_name="Lee", email_status="valid")
recipient = Recipient.objects.create(campaign=campaign, lead=lead, email="lee@example.org", status="sent",
                                     sent_at=timezone.now(), message_id="<demo.1@example.com>")
Recipient.objects.create(campaign=campaign, email="pending@example.org")
EmailEvent.objects.create(recipient=recipient, campaign=campaign, type="open", occurred_at=timezone.now())
import json
print("FUZZ_IDS=" + json.dumps({
    "campaigns": [str(pk) for pk in Campaign.objects.order_by("created_at").values_list("pk", flat=True)],
    "recipients": [str(pk) for pk in Recipient.objects.filter(campaign=campaign).values_list("pk", flat=True)],
}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fuzz_database_url(base: str) -> tuple[str, str, str]:
    """(the fuzz database's URL, its name, the URL of the maintenance database)."""
    parsed = urlparse(base)
    name = (parsed.path.lstrip("/") or "postgres") + "_fuzz"
    return urlunparse(parsed._replace(path="/" + name)), name, urlunparse(parsed._replace(path="/postgres"))


def recreate_database(maintenance_url: str, name: str, *, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def wait_for(url: str, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own loopback server)
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"The server did not answer {url} within {timeout} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=8)
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    parser.add_argument("--stateful", action="store_true", help="add the stateful phase (links between operations)")
    parser.add_argument("--workers", default="1")
    parser.add_argument("--seed", type=int, default=None, help="default: random (make test fixes one)")
    parser.add_argument("--max-time", type=int, default=None, help="seconds for the whole schemathesis run")
    parser.add_argument("--report-dir", default=str(ROOT / ".run" / "fuzz"))
    args = parser.parse_args(argv)

    base_env = dict(os.environ)
    base_env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    database_url, name, maintenance_url = fuzz_database_url(base_env["DATABASE_URL"])
    env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "campaigns_project.test_settings",
        "DATABASE_URL": database_url,
        "REDIS_KEY_PREFIX": base_env.get("REDIS_KEY_PREFIX", "cbo-test:") + "fuzz:",
        "CELERY_BROKER_URL": "memory://",
        "PYTHONUNBUFFERED": "1",
        "WEBHOOK_SECRET": "fuzz-webhook-secret-0123456789",
        "LOG_LEVEL": "ERROR",  # 4xx warnings would drown the report; an ERROR (a 500, a DataError) shows
    }
    recreate_database(maintenance_url, name)
    server = None
    try:
        manage(env, "migrate", "--noinput")
        seeded = manage(env, "seed_demo", "--password", "fuzz-demo-password")
        token = re.search(r"API token: (\w+)", seeded).group(1)
        ids = re.search(r"FUZZ_IDS=(.*)", manage(env, "shell", stdin=DEMO_DATA)).group(1)

        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "campaigns_project.wsgi:application", "--bind", f"127.0.0.1:{port}"]
            + [
                "--workers",
                "2",
                "--threads",
                "4",
                "--config",
                str(ROOT / "gunicorn.conf.py"),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        wait_for(f"{origin}/healthz")

        report_dir = Path(args.report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        phases = args.phases + (",stateful" if args.stateful else "")
        command = [
            str(VENV_BIN / "st"),
            "run",
            f"{origin}/api/schema/?format=json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(args.max_examples),
            "--phases",
            phases,
            "--workers",
            str(args.workers),
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--report",
            "junit",
            "--report-dir",
            str(report_dir),
        ]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        if args.max_time:
            command += ["--max-time", str(args.max_time)]
        started = time.monotonic()
        hooks_env = {
            "SCHEMATHESIS_HOOKS": "fuzz_hooks",  # scripts/fuzz_hooks.py: authentication and webhook signatures
            "PYTHONPATH": str(ROOT / "scripts"),
            "FUZZ_TOKEN": token,
            "FUZZ_WEBHOOK_SECRET": env["WEBHOOK_SECRET"],
            "FUZZ_IDS": ids,  # the demo objects' ids: half the cases aim at them (scripts/fuzz_hooks.py)
            "NO_COLOR": "1",
        }
        result = subprocess.run(command, cwd=ROOT, env={**base_env, **hooks_env})
        print(f"schemathesis finished in {time.monotonic() - started:.0f} s with exit status {result.returncode}")
        return result.returncode
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        recreate_database(maintenance_url, name, drop_only=True)


if __name__ == "__main__":
    sys.exit(main())
