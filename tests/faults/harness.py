"""Real processes for the fault tests: a private redis-server and PostgreSQL cluster on their own
ports, fake MillionVerifier and OpenAI servers over HTTP (counting calls per address), the
counting SMTP sink, real Celery workers and beat, and a driver for the operator's and the
integrator's acts. Each can be killed and started again.

Everything the processes share is in `System.env`: the private servers, INSTALLATION_ID, fast
engine timings (a heartbeat a second, a job stuck after 5 s, a sweep every 2 s), so a lost worker
is found in seconds instead of minutes.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, *, timeout: float, interval: float = 0.2, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class RedisServer:
    """redis-server on a free port, keeping nothing on disk (as this machine's and CI's)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        log = open(self.workdir / "redis.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen([*command, "--dir", str(self.workdir)], stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout=10, what="redis-server")

    def _answers(self) -> bool:
        try:
            return redis.Redis(port=self.port, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class PostgresCluster:
    """A PostgreSQL cluster of its own (initdb, pg_ctl) on a free port, run as the postgres user
    when the tests run as root (initdb refuses root)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.datadir = workdir / "pgdata"
        self.socketdir = workdir / "pgsocket"
        self.log = workdir / "postgres.log"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/faults"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_postgres, *command], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.socketdir.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            shutil.chown(self.datadir.parent, user="postgres")
            shutil.chown(self.socketdir, user="postgres")
        self._run("initdb", "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE faults")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socketdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "immediate") -> None:
        with suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def query(self, sql: str, *params) -> list[tuple]:
        with psycopg.connect(self.url.replace("postgres://", "postgresql://", 1), connect_timeout=3) as conn:
            return conn.execute(sql, params).fetchall()


class FakeProviders:
    """MillionVerifier and OpenAI over real HTTP, in this process: answers like the providers
    (PROVIDERS.md), after `latency` seconds, and counts the calls for each address."""

    def __init__(self, latency: float = 0.02) -> None:
        self.latency = latency
        self.calls: dict[str, Counter] = {"verify": Counter(), "enrich": Counter()}
        self.lock = threading.Lock()
        providers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # MillionVerifier
                email = parse_qs(urlparse(self.path).query).get("email", [""])[0]
                providers.count("verify", email)
                result = "invalid" if email.startswith("bad.") else "ok"
                self._answer({"email": email, "result": result, "quality": "good", "subresult": result, "credits": 9})

            def do_POST(self) -> None:  # OpenAI chat completions
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                providers.count("enrich", prompt)
                self._answer({"choices": [{"message": {"content": f"A line for {prompt.splitlines()[0]}."}}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, kind: str, key: str) -> None:
        time.sleep(self.latency)
        with self.lock:
            self.calls[kind][key] += 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


class SmtpSink:
    """scripts/smtp_sink.py: one line per accepted message in its log."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / "sink.log"
        self.log.touch()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # 20 ms per message: a send batch (SEND_BATCH_SIZE 20) lasts about half a second, so a
        # kill aimed at one in flight lands inside it, whatever the load on the machine.
        command = [PY, str(ROOT / "scripts" / "smtp_sink.py"), "--port", str(self.port), "--log", str(self.log)]
        command += ["--delay-ms", "20"]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().startswith("ready"), "the sink did not start"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def received(self) -> Counter:
        return Counter(self.log.read_text().split())


class System:
    """The servers, the processes and the environment they share."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="faults-"))
        self.redis = RedisServer(self.workdir)
        self.postgres = PostgresCluster(self.workdir)
        self.providers = FakeProviders()
        self.sink = SmtpSink(self.workdir)
        self.workers: list[subprocess.Popen] = []
        self.beat: subprocess.Popen | None = None
        installation = f"faults-{uuid.uuid4().hex[:8]}"
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "DJANGO_SETTINGS_MODULE": "campaigns_project.settings",
            "TESTING": "true",
            "ENV_FILE": str(self.workdir / "no-env-file"),
            "DATABASE_URL": self.postgres.url,
            "DB_CONN_MAX_AGE": "0",
            "REDIS_URL": self.redis.url,
            "INSTALLATION_ID": installation,
            "REDIS_KEY_PREFIX": f"{installation}:",
            "WEBHOOK_SECRET": "faults-webhook-secret-0123456789",
            "MILLIONVERIFIER_API_KEY": "faults",
            "MILLIONVERIFIER_BASE_URL": self.providers.url,
            "OPENAI_API_KEY": "faults",
            "OPENAI_BASE_URL": self.providers.url,
            "PROVIDER_TIMEOUT_SECONDS": "3",
            "PROVIDER_MILLIONVERIFIER_CONCURRENCY": "2",
            "PROVIDER_OPENAI_CONCURRENCY": "2",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.sink.port),
            "EMAIL_TIMEOUT": "3",
            "BREAKER_SMTP_THRESHOLD": "3",
            "ENGINE_BATCH_SIZE": "20",
            "SEND_BATCH_SIZE": "20",
            "ENGINE_TASK_BUDGET_SECONDS": "5",
            "ENGINE_HEARTBEAT_SECONDS": "1",
            "JOB_STUCK_AFTER_SECONDS": "5",
            "ENGINE_STRANDED_AFTER_SECONDS": "3",
            "JOB_RETRY_BACKOFF_SECONDS": "0.5",
            "JOB_MAX_ATTEMPTS": "5",
            "CELERY_TASK_SOFT_TIME_LIMIT": "20",
            "CELERY_TASK_TIME_LIMIT": "30",
            "CELERY_VISIBILITY_TIMEOUT": "60",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }

    # --- lifecycle ---------------------------------------------------------------------------

    def up(self) -> None:
        self.redis.start()
        self.postgres.init()
        self.sink.start()
        self.manage("migrate", "--noinput", "-v", "0")
        # The sweeper every 2 seconds instead of 20: the beat row is the operator's setting.
        self.postgres.query(
            "UPDATE django_celery_beat_periodictask SET interval_id = "
            "(SELECT id FROM django_celery_beat_intervalschedule WHERE every = 2 AND period = 'seconds') "
            "WHERE name = 'campaigns: sweep' RETURNING id"
        )

    def down(self) -> None:
        self.stop_workers()
        self.stop_beat()
        self.sink.stop()
        self.postgres.stop("fast")
        self.redis.kill()
        self.providers.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def manage(self, *args: str, timeout: float = 180) -> str:
        result = subprocess.run(
            [PY, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def driver(self, *args: str) -> dict:
        """Run tests/faults/driver.py (the operator's and the integrator's acts) in the system."""
        result = subprocess.run(
            [PY, str(Path(__file__).parent / "driver.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "a")  # noqa: SIM115
        return subprocess.Popen(
            [PY, "-m", "celery", "-A", "campaigns_project", *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes the pool with it
        )

    def start_workers(self, count: int = 2) -> None:
        """`count` workers of two processes each, on every queue of the installation."""
        for _ in range(count):
            number = len(self.workers)
            self.workers.append(self._spawn(f"worker{number}", "worker", "-c", "2", "-n", f"w{number}@%h"))

    def kill_worker(self, index: int) -> None:
        """kill -9 a whole worker: its main process and its pool, at once."""
        proc = self.workers[index]
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_workers(self) -> None:
        for index, proc in enumerate(self.workers):
            if proc.poll() is None:
                self.kill_worker(index)

    def start_beat(self) -> None:
        self.beat = self._spawn("beat", "beat", "-s", str(self.workdir / "beat-schedule"))

    def stop_beat(self) -> None:
        if self.beat and self.beat.poll() is None:
            os.killpg(self.beat.pid, signal.SIGKILL)
            self.beat.wait()

    def logged(self, text: str) -> bool:
        """Whether a worker or beat wrote `text` to its log."""
        return any(text in path.read_text(errors="replace") for path in self.workdir.glob("*.log"))

    # --- reading the database --------------------------------------------------------------------

    def jobs_by_status(self, campaign_ids: list[str]) -> dict[str, int]:
        rows = self.postgres.query(
            "SELECT status, count(*) FROM campaigns_job WHERE campaign_id = ANY(%s::uuid[]) GROUP BY status",
            campaign_ids,
        )
        return dict(rows)

    def statuses(self, campaign_ids: list[str]) -> dict[str, str]:
        rows = self.postgres.query(
            "SELECT id::text, status FROM campaigns_campaign WHERE id = ANY(%s::uuid[])", campaign_ids
        )
        return dict(rows)

    def processing_batches(self, campaign_ids: list[str]) -> int:
        rows = self.postgres.query(
            "SELECT count(*) FROM campaigns_job WHERE campaign_id = ANY(%s::uuid[]) AND status = 'processing' "
            "AND job_type IN ('verify_email', 'enrich_lead')",
            campaign_ids,
        )
        return rows[0][0]

    def wait_for_final(self, campaign_ids: list[str], timeout: float = 120) -> dict[str, str]:
        def final():
            statuses = self.statuses(campaign_ids)
            if all(status in ("completed", "failed", "cancelled") for status in statuses.values()):
                return statuses
            return None

        try:
            return wait_until(final, timeout=timeout, interval=0.5, what=f"campaigns {campaign_ids} to finish")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.state_dump(campaign_ids)}") from None

    def state_dump(self, campaign_ids: list[str]) -> str:
        """What a timed-out wait saw: campaigns, jobs, recipients, the latch, the last log lines."""
        campaigns = self.postgres.query(
            "SELECT id::text, status, phase, pause_kind, pause_service, status_message FROM campaigns_campaign "
            "WHERE id = ANY(%s::uuid[])",
            campaign_ids,
        )
        recipients = self.postgres.query(
            "SELECT status, count(*) FROM tracking_recipient WHERE campaign_id = ANY(%s::uuid[]) GROUP BY status",
            campaign_ids,
        )
        jobs = self.postgres.query(
            "SELECT job_type, status, count(*), max(last_error) FROM campaigns_job "
            "WHERE campaign_id = ANY(%s::uuid[]) GROUP BY job_type, status",
            campaign_ids,
        )
        latch = self.postgres.query("SELECT state, cause_kind, cause_service, reason FROM queue_control_queuestate")
        stuck = self.postgres.query(
            "SELECT send_job_id, count(*), max(last_error) FROM tracking_recipient "
            "WHERE campaign_id = ANY(%s::uuid[]) AND status = 'sending' GROUP BY send_job_id",
            campaign_ids,
        )
        lines = [
            f"{path.name}: {line}"
            for path in sorted(self.workdir.glob("*.log"))
            for line in path.read_text(errors="replace").splitlines()
            if "WARNING" in line or "ERROR" in line or "journal" in line
        ]
        return "\n".join(
            [f"campaigns: {campaigns}", f"recipients: {recipients}", f"in sending, by job: {stuck}", f"jobs: {jobs}"]
            + [f"latch: {latch}"]
            + ["last warnings and errors:", *lines[-30:]]
        )
