"""`make run`'s runner end to end: embedded Redis, SQLite, web + worker + beat, a demo campaign
started through the API walks to completed, and Ctrl-C stops every process."""

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
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_embedded_run_serves_the_api_and_completes_a_demo_campaign(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "TESTING", "REDIS_KEY_PREFIX", "EMAIL_BACKEND")
    }
    env.update(
        PORT=str(port),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: the runner must embed Redis
        EMAIL_FILE_PATH=str(tmp_path / "mail"),
        SANDBOX_LATENCY_MS="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "scripts/run_embedded.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 120
        while not any("Ctrl-C stops everything" in line for line in output):
            assert time.monotonic() < deadline, "".join(output)
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(output)
            output.append(line)
        text = "".join(output)
        assert "started an embedded redis-server" in text
        assert re.search(r"Admin user: admin  password: \S+", text)
        assert f"http://127.0.0.1:{port}/api/docs/" in text
        token = re.search(r"API token: (\w+)", text).group(1)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"})
        for _ in range(100):
            try:
                healthy = api.get("/healthz").status_code == 200
            except httpx.TransportError:  # the web server is still starting
                healthy = False
            if healthy:
                break
            time.sleep(0.2)
        campaigns = api.get("/api/v1/campaigns/").json()["results"]
        assert len(campaigns) == 3
        assert api.post(f"/api/v1/campaigns/{campaigns[0]['id']}/start/").status_code == 200
        status = None
        for _ in range(150):
            status = api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/").json()
            if status["status"] == "completed":
                break
            time.sleep(0.2)
        assert status["status"] == "completed", status
        assert api.get(f"/api/v1/campaigns/{campaigns[0]['id']}/stats/").json()["sent"] > 0
        assert list((tmp_path / "mail").iterdir()), "no mail written to the local sink"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    survivors = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert survivors == [], "children outlived Ctrl-C"
