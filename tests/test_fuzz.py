"""Fuzzing is part of the suite (issue 11, point 8): schemathesis against the live schema of a
gunicorn started on its own port with its own fresh database and the demo data, over real HTTP,
with not_a_server_error, response_schema_conformance, status_code_conformance and
content_type_conformance; any finding fails. A fixed seed keeps it reproducible; `make fuzz`
runs the long, random, stateful version (docs/security.md)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_schemathesis_finds_nothing_on_a_fresh_database_with_demo_data():
    result = subprocess.run(
        [sys.executable, "scripts/fuzz.py", "--max-examples", "8", "--seed", "11", "--workers", "1"],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-3000:]
    assert "generated" in summary and "Tested: " in summary  # it ran, and on every operation
