"""The engine end to end: one CSV campaign of N leads through every phase on the sandboxes, run by
docker-compose.yml's worker shape, beside two ceilings measured in the same run: the no-op Celery
task rate of the same broker and workers, and a raw smtplib loop's rate to the same SMTP sink.

    createdb -h 127.0.0.1 -U postgres bench_pipeline
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_pipeline
    DEBUG=true .venv/bin/python manage.py migrate
    .venv/bin/python benchmarks/pipeline.py --leads 100000
    ... --channel instantly --leads 2000000          # the 2M-lead run (Instantly sandbox)
    ... --leads 5000 --latency-ms 200 --rate 100     # latency-bound calls against a provider limit

It prints leads/s end to end and per phase, the ratios to the ceilings, the peak RSS of any worker
process, and checks that the sink received one message per recipient. It refuses a database whose
name does not start with "bench", empties the campaign tables when done (--keep leaves them), and
uses its own Redis keys and Celery queues (INSTALLATION_ID bench-pipeline).
"""

import argparse
import csv
import io
import os
import re
import shlex
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
INSTALLATION = "bench-pipeline"
CHILD_ENV = {
    "DJANGO_SETTINGS_MODULE": "campaigns_project.settings",
    "TESTING": "true",  # no SECRET_KEY needed; nothing is served
    "INSTALLATION_ID": INSTALLATION,
    "REDIS_KEY_PREFIX": f"{INSTALLATION}:",
    "CELERY_EXTRA_IMPORTS": "benchmarks.noop",
    "LOG_LEVEL": "WARNING",
    "PYTHONUNBUFFERED": "1",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--channel", choices=("smtp", "instantly"), default="smtp")
    parser.add_argument("--latency-ms", type=int, default=0, help="sandbox latency per provider call")
    parser.add_argument("--rate", type=float, default=0, help="MillionVerifier and OpenAI limit, calls/s (0: none)")
    parser.add_argument("--noop", type=int, default=3000, help="no-op tasks for the broker's own rate (0: skip)")
    parser.add_argument("--raw-smtp", type=int, default=5000, help="messages of the raw smtplib loop (0: skip)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", action="store_true", help="leave the campaign's rows in the database")
    return parser.parse_args()


args = parse_args()
os.environ.update(CHILD_ENV)
os.environ["SANDBOX_LATENCY_MS"] = str(args.latency_ms)
for service in ("MILLIONVERIFIER", "OPENAI"):
    os.environ[f"PROVIDER_{service}_RATE"] = str(args.rate)
    if args.latency_ms and args.rate:
        # Enough calls in flight per worker to reach the limit: rate x latency, split over 2 workers.
        os.environ.setdefault(f"PROVIDER_{service}_CONCURRENCY", str(int(args.rate * args.latency_ms / 1000) + 8))
os.environ["PROVIDER_INSTANTLY_RATE"] = "0" if not args.rate else "100"
SINK_PORT = 0

import django  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SINK_PORT = free_port()
os.environ.update(
    {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(SINK_PORT),
        "EMAIL_USE_TLS": "false",
    }
)
django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from campaigns import services  # noqa: E402
from campaigns.csv_import import leads_import_csv  # noqa: E402
from campaigns.models import CampaignPhase, Organization  # noqa: E402
from campaigns.states import CAMPAIGN_FINAL_STATUSES, PHASE_ORDER  # noqa: E402
from campaigns_project.celery import app  # noqa: E402
from campaigns_project.redis import get_redis, rkey  # noqa: E402
from queue_control.models import QueueState  # noqa: E402
from tracking.models import Recipient  # noqa: E402


def compose_worker_command() -> list[str]:
    """The worker command of docker-compose.yml, with this run's installation in the queue names."""
    text = (ROOT / "docker-compose.yml").read_text()
    match = re.search(r"^  worker:\n(?:    .*\n)*?    command: (\[.*\])", text, re.M)
    if not match:
        raise SystemExit("docker-compose.yml has no worker command")
    import yaml

    command = yaml.safe_load(match.group(1))
    expanded = [re.sub(r"\$\{INSTALLATION_ID:-[^}]*\}", INSTALLATION, part) for part in command]
    expanded = [re.sub(r"\$\{WORKER_CONCURRENCY:-(\d+)\}", r"\1", part) for part in expanded]
    assert expanded[:3] == ["celery", "-A", "campaigns_project"], expanded
    return [sys.executable, "-m", *expanded]


class Processes:
    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def start(self, command: list[str], name: str) -> subprocess.Popen:
        log = open(Path(tempfile.gettempdir()) / f"bench-pipeline-{name}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.children.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.children:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def rss_of_tree(pid: int) -> list[int]:
    """RSS in bytes of a process and its children (prefork pool processes)."""
    sizes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().split()
            if int(entry.name) == pid or int(stat[3]) == pid:
                sizes.append(int(stat[23]) * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, IndexError, ValueError):
            continue
    return sizes


def wait_for_workers(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= 2:
            return
    raise SystemExit("the workers did not answer")


def noop_rate(count: int) -> float:
    r = get_redis()
    key = rkey("bench", "noop")
    r.delete(key)
    queue = settings.CELERY_QUEUE_NAMES["pipeline"]
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task("benchmarks.noop", queue=queue, producer=producer)
    while int(r.get(key) or 0) < count:
        time.sleep(0.01)
    return count / (time.perf_counter() - started)


def raw_smtp_rate(count: int, campaign) -> float:
    """smtplib.sendmail in a loop over one connection, of one of the campaign's own messages
    (rendered once, tracking links and headers included), so both move the same bytes."""
    from campaigns.templating import SAMPLE_LEAD
    from tracking.models import Recipient as RecipientRow
    from tracking.rendering import LinkRegistry, add_tracking, build_message, render_content

    sample = RecipientRow(campaign=campaign, email="raw@raw.example")
    content = add_tracking(
        render_content(campaign=campaign, context=dict(SAMPLE_LEAD)), recipient=sample, links=LinkRegistry(campaign.pk)
    )
    data = build_message(campaign=campaign, content=content, to=sample.email, recipient=sample).as_bytes()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", SINK_PORT) as smtp:
        for i in range(count):
            smtp.sendmail(campaign.from_email, [f"raw{i}@raw.example"], data)
    return count / (time.perf_counter() - started)


def csv_of(n: int) -> io.BytesIO:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["email", "first_name", "last_name", "company", "title"])
    for i in range(n):
        writer.writerow([f"lead{i}@company{i % 997}.example", f"First{i}", f"Last{i}", f"Company {i % 997}", "CTO"])
    return io.BytesIO(buffer.getvalue().encode())


def empty_campaign_tables() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_campaign, campaigns_lead, campaigns_job, campaigns_campaignphase, "
            "campaigns_campaignevent, tracking_recipient, tracking_emailevent, tracking_link, "
            "tracking_campaigncounter CASCADE"
        )


def main() -> int:
    name = settings.DATABASES["default"]["NAME"]
    if connection.vendor != "postgresql" or not str(name).startswith("bench"):
        raise SystemExit(f"refusing to run on database {name!r}: use a PostgreSQL database named bench_*")
    empty_campaign_tables()
    QueueState.objects.update_or_create(pk=1, defaults={"state": "active", "reason": ""})
    for key in get_redis().scan_iter(match=f"{INSTALLATION}:*"):
        get_redis().delete(key)
    app.control.purge()

    sink_log = Path(tempfile.gettempdir()) / "bench-pipeline-sink.log"
    sink_log.write_text("")
    procs = Processes()
    worker = compose_worker_command()
    celery = [sys.executable, "-m", "celery", "-A", "campaigns_project"]
    try:
        sink = procs.start(
            [sys.executable, "scripts/smtp_sink.py", "--port", str(SINK_PORT), "--log", str(sink_log)], "sink"
        )
        workers = [
            procs.start([*worker, "-n", "bench-worker@%h"], "worker"),
            procs.start(
                [
                    *celery,
                    "worker",
                    "-Q",
                    settings.CELERY_QUEUE_NAMES["housekeeping"],
                    "-c",
                    "1",
                    "-n",
                    "bench-house@%h",
                ],
                "housekeeping",
            ),
        ]
        wait_for_workers()
        print(f"worker shape (docker-compose.yml): {shlex.join(worker[2:])}")
        ceiling = noop_rate(args.noop) if args.noop else 0.0
        if ceiling:
            print(f"no-op Celery tasks, same broker and workers: {ceiling:,.0f} tasks/s ({args.noop} tasks)")
        org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
        Organization.objects.filter(pk=org.pk, postal_address="").update(postal_address="1 Bench Street, Berlin")
        org.refresh_from_db()
        campaign = services.campaign_create(
            organization=org,
            name=f"Bench {args.leads} leads",
            channel=args.channel,
            from_email="bench@acme.example",
            from_name="Bench",
            subject_template="Hello {{ first_name }}",
            body_template="Hi {{ first_name }}, {{ personalization }} See https://example.com/offer",
            send_rate_per_minute=settings.CAMPAIGN_MAX_SEND_RATE_PER_MINUTE,
        )
        raw = raw_smtp_rate(args.raw_smtp, campaign) if args.raw_smtp and args.channel == "smtp" else 0.0
        if raw:
            print(f"raw smtplib loop to the same sink, the campaign's message: {raw:,.0f} msg/s ({args.raw_smtp})")
        sink_log.write_text("")
        started = time.perf_counter()
        leads_import_csv(campaign_id=campaign.pk, file=csv_of(args.leads), file_name="bench.csv")
        imported = time.perf_counter() - started
        print(f"CSV import of {args.leads:,} leads: {imported:.1f} s")

        run_started = time.perf_counter()
        services.campaign_start(campaign_id=campaign.pk)
        peak_rss = 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            for proc in workers:
                peak_rss = max([peak_rss, *rss_of_tree(proc.pid)])
            campaign.refresh_from_db()
            if campaign.status in CAMPAIGN_FINAL_STATUSES or campaign.status == "paused":
                break
            time.sleep(1)
        elapsed = time.perf_counter() - run_started
        print(f"\ncampaign {campaign.status} after {elapsed:.1f} s: {campaign.status_message or campaign.status_error}")
        report(campaign, elapsed, ceiling, raw, peak_rss, sink_log, sink)
    finally:
        procs.stop()
        if not args.keep:
            empty_campaign_tables()
    return 0


def report(campaign, elapsed, ceiling, raw, peak_rss, sink_log, sink) -> None:
    phases = {row.phase: row for row in CampaignPhase.objects.filter(campaign=campaign)}
    print(f"{'phase':<14}{'items':>11}{'seconds':>10}{'items/s':>11}  ratio")
    for name in PHASE_ORDER[:-1]:
        row = phases.get(name)
        if row is None or row.finished_at is None:
            continue
        seconds = (row.finished_at - row.started_at).total_seconds()
        rate = (row.items_done + row.items_failed) / seconds if seconds else 0
        ratio = ""
        if name in ("verification", "enrichment") and ceiling:
            ratio = f"{rate / ceiling:.2f}x the no-op task rate"
        if name in ("verification", "enrichment") and args.rate:
            ratio += f"  {rate / args.rate:.0%} of the {args.rate:g}/s provider limit"
        if name == "outreach" and raw:
            ratio = f"{rate / raw:.0%} of the raw smtplib loop"
        print(f"{name:<14}{row.items_total:>11,}{seconds:>10.1f}{rate:>11,.0f}  {ratio}")
    outreach = phases.get("outreach")
    if args.channel == "smtp" and outreach is not None and outreach.finished_at is not None:
        from django.db.models import Max, Min

        first, last = (
            Recipient.objects.filter(campaign=campaign).aggregate(first=Min("sent_at"), last=Max("sent_at")).values()
        )
        launch = (first - outreach.started_at).total_seconds()
        sending = (last - first).total_seconds()
        rate = outreach.items_passed / sending if sending else 0
        print(f"  outreach: launch (recipients, jobs) {launch:.1f} s, then {rate:,.0f} msg/s", end="")
        print(f" = {rate / raw:.0%} of the raw smtplib loop" if raw else "")
    leads = phases["lead_sourcing"].items_done if "lead_sourcing" in phases else 0
    print(f"end to end: {leads:,} leads in {elapsed:.1f} s = {leads / elapsed:,.0f} leads/s")
    print(f"peak worker RSS (any process): {peak_rss / 2**20:,.0f} MB")
    if args.channel == "smtp":
        time.sleep(0.5)
        received = Counter(sink_log.read_text().split())
        recipients = Recipient.objects.filter(campaign=campaign)
        sent = recipients.filter(status="sent").count()
        twice = [address for address, n in received.items() if n > 1]
        total = sum(received.values())
        print(f"sink received {total:,} messages for {sent:,} recipients marked sent; mailed twice: {len(twice)}")


if __name__ == "__main__":
    sys.exit(main())
