"""`make test` refuses to run a partial suite: a server that does not answer is named, with how to start it."""

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(**env):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_services.py")],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


def test_it_passes_when_both_servers_answer():
    result = check()
    assert result.returncode == 0, result.stderr
    assert "reachable" in result.stdout


def test_it_names_an_unreachable_redis_and_how_to_start_it():
    result = check(REDIS_URL=f"redis://127.0.0.1:{dead_port()}/0")
    assert result.returncode == 1
    assert "Redis is not reachable" in result.stderr
    assert "redis-server --daemonize yes" in result.stderr
    assert "PostgreSQL" not in result.stderr


def test_it_names_an_unreachable_postgresql_and_how_to_start_it():
    result = check(DATABASE_URL=f"postgres://postgres@127.0.0.1:{dead_port()}/test")
    assert result.returncode == 1
    assert "PostgreSQL is not reachable" in result.stderr
    assert "pg_ctlcluster" in result.stderr
