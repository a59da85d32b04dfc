"""`make run`'s runner end to end: embedded Redis, SQLite, web + worker + beat, a demo campaign
started through the API sends step 1 of its sequence and waits for step 2, a reply (inbound
endpoint, local IMAP mailbox) stops that lead, a burst of bounces pauses the campaign with the
cause `deliverability`, the README's commands work beside it with no
variable set by hand, and Ctrl-C stops every process. A restart after reset_state gives the
product back, with the same admin password."""

import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
_spec = importlib.util.spec_from_file_location("local_imap", ROOT / "scripts" / "local_imap.py")
local_imap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_imap)
pytestmark = pytest.mark.slow
# What a fresh shell in a fresh clone has not set: the commands must find it all in .run/env.
NOT_SET_BY_HAND = (
    "DJANGO_SETTINGS_MODULE",
    "TESTING",
    "DEBUG",
    "SECRET_KEY",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "INSTALLATION_ID",
    "DATABASE_URL",
    "EMAIL_BACKEND",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in NOT_SET_BY_HAND}
    env["ENV_FILE"] = str(tmp_path / "env")  # the checkout's .run/env, kept out of the checkout
    return env


class Run:
    def __init__(self, tmp_path, port: int, redis_port: int) -> None:
        env = bare_env(tmp_path)
        env.update(
            PORT=str(port),
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",  # nothing listens: the runner must embed Redis
            EMAIL_FILE_PATH=str(tmp_path / "mail"),
            SANDBOX_LATENCY_MS="0",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/run_embedded.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output = []
        deadline = time.monotonic() + 120
        while not any("Ctrl-C stops everything" in line for line in output):
            assert time.monotonic() < deadline, "".join(output)
            line = self.proc.stdout.readline()
            assert line or self.proc.poll() is None, "".join(output)
            output.append(line)
        self.text = "".join(output)
        self.password = re.search(r"Admin user: admin  password: (\S+)", self.text).group(1)
        token = re.search(r"API token: (\w+)", self.text).group(1)
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"})
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):  # the web server is still starting
                if self.api.get("/healthz").status_code == 200:
                    break
            time.sleep(0.2)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        survivors = subprocess.run(["pgrep", "-s", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        assert survivors == [], "children outlived Ctrl-C"


def manage(tmp_path, *args, timeout=120) -> subprocess.CompletedProcess:
    """`.venv/bin/python manage.py ...` as typed in a fresh shell of the checkout."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=bare_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_embedded_run_and_the_commands_beside_it(tmp_path):
    port, redis_port = free_port(), free_port()
    run = Run(tmp_path, port, redis_port)
    try:
        assert "started an embedded redis-server" in run.text
        assert f"http://127.0.0.1:{port}/api/docs/" in run.text
        env_file = (tmp_path / "env").read_text()
        for line in ("DEBUG=true", f"REDIS_URL=redis://127.0.0.1:{redis_port}/0", "INSTALLATION_ID=cbo-"):
            assert line in env_file
        assert re.search(r"^SECRET_KEY=\S{40,}$", env_file, re.MULTILINE)

        campaigns = run.api.get("/api/v1/campaigns/").json()["results"]
        assert len(campaigns) == 3
        assert run.api.post(f"/api/v1/campaigns/{campaigns[0]['id']}/start/").status_code == 200
        # The demo campaign is a three-step sequence: step 1 goes to everyone, then the campaign
        # runs on, waiting two business days for step 2 (nothing parked in the broker meanwhile).
        status = None
        for _ in range(300):
            status = run.api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/").json()
            if "waiting for a later step" in status["status_message"]:
                break
            time.sleep(0.2)
        assert (status["status"], status["phase"]) == ("running", "outreach"), status
        assert "waiting for a later step" in status["status_message"], status
        assert run.api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/stats/").json()["sent"] > 0
        assert list((tmp_path / "mail").iterdir()), "no mail written to the local sink"

        # A lead answers: the reply, posted to the inbound endpoint with the secret make run keeps
        # in its environment file, is matched to the message sent and counted.
        secret = re.search(r"^INBOUND_MAIL_SECRET=(\S{24,})$", env_file, re.MULTILINE).group(1)
        sent = run.api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/recipients/").json()["results"][0]
        reply = f"From: {sent['email']}\r\nIn-Reply-To: {sent['message_id']}\r\nSubject: Re: hi\r\n\r\nYes!\r\n"
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/webhooks/inbound-mail/",
            content=reply.encode(),
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "message/rfc822"},
        )
        assert answer.status_code == 200 and answer.json()["recorded"] is True, answer.text
        assert run.api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/stats/").json()["replies"] == 1
        replied = run.api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/recipients/{sent['id']}/").json()
        assert replied["stop_reason"] == "replied" and replied["stopped_at"], replied  # no step 2 for them

        # Another reply lands in the local IMAP mailbox make run started: the watcher reads it.
        imap_port = int(re.search(r"IMAP: +127\.0\.0\.1:(\d+)", run.text).group(1))
        imap_password = re.search(r"^LOCAL_IMAP_PASSWORD=(\S+)$", env_file, re.MULTILINE).group(1)
        by_imap = reply.replace("Subject: Re: hi", "Message-ID: <by-imap@example.org>\r\nSubject: Re: hi")
        local_imap.append(port=imap_port, password=imap_password, raw=by_imap.encode())
        for _ in range(100):
            stats = run.api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/stats/").json()
            if stats["replies"] == 2:
                break
            time.sleep(0.2)
        assert stats["replies"] == 2, "the reply in the local IMAP mailbox was not read"

        # A burst of bounces: the deliverability guard pauses the campaign, naming the figure
        # (make run judges after 10 sends), and nothing resumes it by itself.
        others = run.api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/recipients/?status=sent").json()["results"]
        for recipient in [r for r in others if r["id"] != sent["id"]][:3]:
            bounced = run.api.post(f"/api/v1/campaigns/tracking/{recipient['id']}/bounce/", json={})
            assert bounced.status_code == 201, bounced.text
        for _ in range(100):
            status = run.api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/").json()
            if status["status"] == "paused":
                break
            time.sleep(0.2)
        assert (status["status"], status["pause"]["kind"]) == ("paused", "deliverability"), status
        assert "bounce" in status["pause"]["figure"], status

        # The README's commands, with nothing set by hand, reach the same database and Redis.
        cleanup = manage(tmp_path, "cleanup_jobs", "--days", "0", "--dry-run")
        assert cleanup.returncode == 0, cleanup.stderr
        assert re.search(r"would delete [1-9]\d* final jobs", cleanup.stdout), cleanup.stdout
        smoke = manage(tmp_path, "run_concurrent_campaigns", "--campaigns", "1", "--leads", "2", "--poll", "0.5")
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr  # make run's own worker ran it
        seeded = manage(tmp_path, "seed_demo")
        assert f"password: {run.password}" in seeded.stdout, seeded.stdout + seeded.stderr
        bad_days = manage(tmp_path, "cleanup_jobs", "--days", "-1")
        assert bad_days.returncode == 2 and "Traceback" not in bad_days.stderr

        reset = manage(tmp_path, "reset_state", "--yes")
        assert reset.returncode == 0, reset.stderr
        assert "campaigns_campaign: " in reset.stdout
        refused = run.api.post("/api/v1/campaigns/", json={"name": "After the reset"})
        assert refused.status_code == 400  # no organization any more, until seeded again
    finally:
        run.stop()

    # The next start re-creates the demo organization and admin, with the same password.
    again = Run(tmp_path, port, redis_port)
    try:
        assert again.password == run.password
        created = again.api.post("/api/v1/campaigns/", json={"name": "After the reset"})
        assert created.status_code == 201, created.text
        assert created.json()["organization"] == "demo"
    finally:
        again.stop()
