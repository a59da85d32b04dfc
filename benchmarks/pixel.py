"""Open pixel throughput under gunicorn, against a bare Django view served the same way.

    .venv/bin/python benchmarks/pixel.py

Target: the pixel serves at least 70% of the bare view's requests per second, and every pixel
request is recorded (open events in the database == pixel requests sent).

The pixel buffers each open in Redis (one RPUSH); a drainer process, standing in for the beat
task tracking.tasks.drain_opens, runs that task every BENCH_DRAIN_INTERVAL seconds (2, like the
beat row) during the whole run, on the same two cores as gunicorn and wrk. After the last run the
script drains what is left and compares the open events in the database with the pixel requests
gunicorn served. Redis keys carry their own prefix (BENCH_PIXEL_REDIS_KEY_PREFIX, default
cbo-bench-pixel:) on REDIS_URL.

It also prints the CPU time each group of processes (gunicorn, drainer, PostgreSQL, Redis) spent
per request in each kind of run, read from /proc: where the pixel's extra cost goes.
"""

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_URL = os.environ.get("BENCH_PIXEL_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_pixel")
RECIPIENTS = int(os.environ.get("BENCH_RECIPIENTS", "20000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))  # per run
# Many short alternating rounds: the box drifts by ±10 % over a minute, and a pair of runs taken
# back to back sees the same drift.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
DRAIN_INTERVAL = float(os.environ.get("BENCH_DRAIN_INTERVAL", "2"))
WRK_THREADS = 2
# Gunicorn as docker-compose.yml and the Dockerfile run it: 3 sync workers. BENCH_GUNICORN_THREADS
# above 1 switches to gthread workers with that many threads each, for comparison.
WORKERS = int(os.environ.get("BENCH_GUNICORN_WORKERS", "3"))
WORKER_THREADS = int(os.environ.get("BENCH_GUNICORN_THREADS", "1"))
TARGET_RATIO = 0.70

SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "benchmarks.bench_settings",
    "DATABASE_URL": DATABASE_URL,
    "DEBUG": "false",
    "TESTING": "false",
    "SECRET_KEY": "benchmark-only-secret-key",
    "WEBHOOK_SECRET": "benchmark-only-webhook-secret",  # required with DEBUG off since issue 11
    "ALLOWED_HOSTS": "127.0.0.1",
    "LOG_LEVEL": "WARNING",
    "REDIS_KEY_PREFIX": os.environ.get("BENCH_PIXEL_REDIS_KEY_PREFIX", "cbo-bench-pixel:"),
}
os.environ.update(SERVER_ENV)

WRK_SCRIPT = r"""
wrk.headers["User-Agent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari"
local threads = {}
local mode = os.getenv("MODE")

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  tokens = {}
  for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
  sent, completed, bad = 0, 0, 0
  math.randomseed(os.time() * 100 + id)
end

function request()
  sent = sent + 1
  if mode == "bare" then return wrk.format("GET", "/bare") end
  return wrk.format("GET", "/t/o/" .. tokens[math.random(#tokens)] .. ".gif")
end

function response(status, headers, body)
  completed = completed + 1
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local s, c, b = 0, 0, 0
  for _, t in ipairs(threads) do s = s + t:get("sent"); c = c + t:get("completed"); b = b + t:get("bad") end
  io.write(string.format("RESULT sent=%d completed=%d bad=%d errors=%d duration_us=%d p99_us=%d\n",
    s, c, b, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(99)))
end
"""


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def seed():
    """A campaign with RECIPIENTS sent recipients, and no events yet."""
    from django.core.management import call_command
    from django.utils import timezone

    from campaigns.models import Campaign, Organization
    from tracking.models import CampaignCounter, EmailEvent, Recipient

    call_command("migrate", verbosity=0)
    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    campaign = Campaign.objects.filter(organization=org, name="pixel benchmark").first()
    if campaign is None:
        campaign = Campaign.objects.create(organization=org, name="pixel benchmark", status="running")
    from campaigns_project.redis import get_redis, rkey

    get_redis().delete(rkey("tracking", "opens"), rkey("tracking", "opens", "drain-lock"))
    EmailEvent.objects.filter(campaign=campaign).delete()
    CampaignCounter.objects.filter(campaign=campaign).delete()
    Recipient.objects.filter(campaign=campaign).delete()
    sent_at = timezone.now()
    Recipient.objects.bulk_create(
        [
            Recipient(campaign=campaign, email=f"r{i}@example.org", status="sent", sent_at=sent_at)
            for i in range(RECIPIENTS)
        ],
        batch_size=5000,
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tracking_recipient")
    return campaign, list(Recipient.objects.filter(campaign=campaign).values_list("token", flat=True))


CPU_GROUPS = ("gunicorn", "drainer", "postgres", "redis")  # wrk exits before it could be read
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by each group of processes on the box, from /proc."""
    totals = dict.fromkeys((*CPU_GROUPS, "system"), 0.0)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if "gunicorn" in cmdline:
            group = "gunicorn"
        elif "pixel.py --drain" in cmdline:
            group = "drainer"
        elif cmdline.startswith("postgres"):
            group = "postgres"
        elif "redis-server" in cmdline:
            group = "redis"
        else:
            continue
        totals[group] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
        totals["system"] += int(fields[12]) / CLOCK_TICKS
    return totals


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int, access_log: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "campaigns_project.wsgi:application",
            "--chdir",
            str(ROOT),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(WORKERS),
            *(["--worker-class", "gthread", "--threads", str(WORKER_THREADS)] if WORKER_THREADS > 1 else []),
            # The access log counts the requests that reached the app: wrk's own count includes
            # one request per run that it built but never wrote when its timer ran out.
            "--access-logfile",
            str(access_log),
            "--log-level",
            "warning",
        ],
        env={**os.environ, **SERVER_ENV},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/bare", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer on /bare within 30 s")


def run_wrk(port: int, mode: str, seconds: int, script: Path, tokens: Path) -> dict:
    env = {**os.environ, "MODE": mode, "TOKENS": str(tokens)}
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(WRK_THREADS),
            "-c",
            str(CONNECTIONS),
            "-d",
            f"{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"RESULT (.*)", out)
    if match is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    result = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    result["rps"] = result["completed"] / (result["duration_us"] / 1e6)
    return result


def drainer() -> int:
    """The drainer process (`pixel.py --drain`): what the beat row does, until SIGTERM: run the
    drain_opens task (batch after batch until the buffer is empty), then wait DRAIN_INTERVAL."""
    import django

    django.setup()
    from tracking.services import opens_pending
    from tracking.tasks import drain_opens

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    written = runs = backlog = 0
    while not stopping:
        backlog = max(backlog, opens_pending())
        written += drain_opens()
        runs += 1
        deadline = time.monotonic() + DRAIN_INTERVAL
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
    print(f"drainer: {written} events written in {runs} runs, largest backlog {backlog} opens", flush=True)
    return 0


def drain_to_empty() -> float:
    """Drain what the drainer left; returns the seconds it took."""
    from tracking.services import opens_drain, opens_pending

    started = time.monotonic()
    while opens_pending():
        opens_drain()
    return time.monotonic() - started


def main() -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    ensure_database(DATABASE_URL)
    import django

    django.setup()
    from tracking.models import EmailEvent

    campaign, tokens = seed()
    workdir = Path(tempfile.mkdtemp(prefix="bench-pixel-"))
    tokens_file, script = workdir / "tokens.txt", workdir / "pixel.lua"
    tokens_file.write_text("\n".join(tokens) + "\n")
    script.write_text(WRK_SCRIPT)

    port = free_port()
    # A SIGTERM (a timeout) unwinds through the finally below, so gunicorn is never left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    access_log = workdir / "access.log"
    server = start_gunicorn(port, access_log)
    drain_process = subprocess.Popen([sys.executable, __file__, "--drain"], env={**os.environ, **SERVER_ENV})
    pixel_sent = 0
    results: dict[str, list[dict]] = {"bare": [], "pixel": []}
    try:
        # Warm-up: connections, caches, imports.
        run_wrk(port, "bare", 3, script, tokens_file)
        pixel_sent += run_wrk(port, "pixel", 3, script, tokens_file)["sent"]
        for _ in range(ROUNDS):
            for mode in ("bare", "pixel"):
                before = cpu_seconds()
                result = run_wrk(port, mode, SECONDS, script, tokens_file)
                after = cpu_seconds()
                result["cpu_us"] = {g: (after[g] - before[g]) * 1e6 / max(result["completed"], 1) for g in after}
                results[mode].append(result)
                if mode == "pixel":
                    pixel_sent += result["sent"]
                print(
                    f"{mode:5}  {result['rps']:8.0f} req/s  sent {result['sent']:6}  completed {result['completed']:6}"
                    f"  non-200 {result['bad']}  socket errors {result['errors']}"
                    f"  p99 {result['p99_us'] / 1000:.1f} ms",
                    flush=True,
                )
        time.sleep(1)  # let the last in-flight requests finish before counting
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        drain_process.send_signal(signal.SIGTERM)
        try:
            drain_process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            drain_process.kill()  # harmless: whatever it had not trimmed is drained below, once
            drain_process.wait()
        served = sum(1 for line in access_log.open() if '"GET /t/o/' in line)
        shutil.rmtree(workdir, ignore_errors=True)

    bare = statistics.median(r["rps"] for r in results["bare"])
    pixel = statistics.median(r["rps"] for r in results["pixel"])
    ratio = pixel / bare
    left_seconds = drain_to_empty()
    recorded = EmailEvent.objects.filter(campaign=campaign, type="open").count()
    failures = sum(r["bad"] + r["errors"] for r in results["pixel"])
    print("\nCPU per request (µs, median of the runs), by process group:")
    for mode in ("bare", "pixel"):
        split = {g: statistics.median(r["cpu_us"][g] for r in results[mode]) for g in CPU_GROUPS}
        shares = "  ".join(f"{group} {us:6.1f}" for group, us in split.items())
        system = statistics.median(r["cpu_us"]["system"] for r in results[mode])
        print(f"  {mode:5} {shares}  total {sum(split.values()):6.1f}  (of which in the kernel {system:6.1f})")
    pairs = [p["rps"] / b["rps"] for b, p in zip(results["bare"], results["pixel"], strict=True)]
    print(f"\nratio of each round's pixel run to its bare run: {', '.join(f'{r:.0%}' for r in pairs)}")
    print(f"bare view  median {bare:8.0f} req/s")
    print(f"open pixel median {pixel:8.0f} req/s   ratio {ratio:.0%} (target >= {TARGET_RATIO:.0%})")
    print(f"final drain of what was left after the last run: {left_seconds:.2f} s")
    print(
        f"pixel requests: built by wrk {pixel_sent}, served by gunicorn {served}, open events recorded {recorded},"
        f" failed answers {failures}"
    )
    ok = ratio >= TARGET_RATIO and recorded == served and failures == 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(drainer() if sys.argv[1:] == ["--drain"] else main())
