"""A three-step sequence to N recipients against the local SMTP sink (scripts/smtp_sink.py), with
the step scheduler's overhead measured against sending alone, in the same run.

    createdb -h 127.0.0.1 -U postgres bench_sequence
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_sequence REDIS_URL=redis://127.0.0.1:6379/5
    DEBUG=true .venv/bin/python manage.py migrate
    .venv/bin/python benchmarks/sequence.py --recipients 100000

Two campaigns of N verified leads each, sent by the send_email job handler in this process, one
job after another (the engine's batches, claims, journal and call_permit, as a worker runs them):

- "sending alone": a campaign without steps, sent once;
- "sequence": the same campaign with two follow-ups (step 2 in the same thread, step 3 in a new
  one), one day apart on the simulated clock (tracking.clock): step 1, then for each later step
  the settler arms the due recipients and creates their jobs (the scheduler), and the jobs send.

It prints the seconds of each part, messages/s, and the overhead: the sequence's seconds per
message (scheduling included) over sending alone's. It checks that the sink received one message
per recipient and step, refuses a database whose name does not start with "bench", and empties
the campaign tables when done (--keep leaves them).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns_project.settings")
os.environ.setdefault("TESTING", "true")  # no SECRET_KEY needed; nothing is served
os.environ.setdefault("INSTALLATION_ID", "bench-sequence")
os.environ.setdefault("REDIS_KEY_PREFIX", "bench-sequence:")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import F  # noqa: E402
from django.utils import timezone  # noqa: E402

from campaigns.models import Campaign, Job, Lead, Organization  # noqa: E402
from campaigns.registry import JOB_HANDLERS, OUTREACH_LAUNCHERS, OUTREACH_SETTLERS, OutreachOutcome  # noqa: E402
from tracking import clock  # noqa: E402
from tracking.models import SequenceStep, StepSend  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="leave the campaigns' rows in the database")
    return parser.parse_args()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink(log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "smtp_sink.py"), "--port", str(port), "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = sink.stdout.readline()
    if not line.startswith("ready"):
        raise SystemExit(f"The SMTP sink did not start: {line!r}")
    return sink, port


def campaign_with_leads(org: Organization, name: str, count: int) -> Campaign:
    campaign = Campaign.objects.create(
        organization=org,
        name=name,
        status="running",
        phase="outreach",
        channel="smtp",
        from_name="Bench",
        from_email="bench@example.com",
        subject_template="Hello {{ first_name }}",
        body_template="Hi {{ first_name }}, see https://example.com/offer and https://example.com/pricing.",
        send_rate_per_minute=100_000_000,  # the batch size bounds a job, not the rate
    )
    batch = 10_000
    for start in range(0, count, batch):
        Lead.objects.bulk_create(
            Lead(
                campaign=campaign,
                email=f"{name}-{i}@example.org",
                first_name=f"P{i}",
                email_status="valid",
                source="csv",
            )
            for i in range(start, min(count, start + batch))
        )
    return campaign


def run_jobs(campaign: Campaign) -> int:
    sent = 0
    jobs = list(Job.objects.filter(campaign=campaign, job_type="send_email", status="pending").order_by("pk"))
    for job in jobs:
        Job.objects.filter(pk=job.pk).update(status="processing", attempts=F("attempts") + 1)
        job.refresh_from_db()
        sent += JOB_HANDLERS["send_email"](job=job)["sent"]
        Job.objects.filter(pk=job.pk).update(status="completed", finished_at=timezone.now())
    return sent


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def main() -> int:
    args = parse_args()
    name = settings.DATABASES["default"]["NAME"]
    if not str(name).startswith("bench"):
        raise SystemExit(f"Refusing to run on database {name!r}: its name must start with 'bench'.")
    n = args.recipients
    log = Path(tempfile.gettempdir()) / f"bench-sequence-sink-{os.getpid()}.log"
    sink, port = start_sink(log)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    org, _ = Organization.objects.get_or_create(
        slug="bench-sequence", defaults={"name": "Bench", "postal_address": "1 Bench Street"}
    )
    figures: dict[str, float] = {}
    try:
        print(f"Setting up 2 × {n:,} leads …", flush=True)
        alone = campaign_with_leads(org, "alone", n)
        sequence = campaign_with_leads(org, "seq", n)
        for number, same_thread in ((2, True), (3, False)):
            SequenceStep.objects.create(
                campaign=sequence,
                number=number,
                delay_days=1,
                same_thread=same_thread,
                subject_template="" if same_thread else "Another idea, {{ first_name }}",
                body_template=f"Step {number}: hi {{{{ first_name }}}}, https://example.com/book",
            )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        clock.clock_set(timezone.now())
        OUTREACH_LAUNCHERS["smtp"](campaign=alone)
        sent, figures["alone"] = timed(run_jobs, alone)
        assert sent == n, sent
        print(f"sending alone: {n:,} messages in {figures['alone']:.1f} s ({n / figures['alone']:,.0f}/s)", flush=True)

        _, figures["launch"] = timed(lambda: OUTREACH_LAUNCHERS["smtp"](campaign=sequence))
        sent, figures["step 1"] = timed(run_jobs, sequence)
        assert sent == n, sent
        for step in (2, 3):
            clock.clock_advance(days=1, minutes=1)
            outcome, figures[f"schedule {step}"] = timed(lambda: OUTREACH_SETTLERS["smtp"](campaign=sequence))
            assert outcome.state == OutreachOutcome.MORE, outcome
            sent, figures[f"step {step}"] = timed(run_jobs, sequence)
            assert sent == n, (step, sent)
        outcome, figures["final settle"] = timed(lambda: OUTREACH_SETTLERS["smtp"](campaign=sequence))
        assert outcome.state == OutreachOutcome.DONE, outcome
    finally:
        clock.clock_reset()
        sink.terminate()
        sink.wait()

    received = Counter(line.strip() for line in log.read_text().splitlines())
    per_address = Counter(count for address, count in received.items() if address.startswith("seq-"))
    alone_ok = sum(1 for address in received if address.startswith("alone-")) == n
    seq_ok = per_address == Counter({3: n})
    steps = StepSend.objects.filter(campaign=sequence).count()
    log.unlink()

    sequence_total = sum(v for k, v in figures.items() if k != "alone")
    scheduling = sum(v for k, v in figures.items() if k.startswith("schedule") or k == "final settle")
    per_message_alone = figures["alone"] / n
    per_message_sequence = sequence_total / (3 * n)
    print()
    print(f"{'part':<16}{'seconds':>10}{'messages/s':>14}")
    for key, seconds in figures.items():
        rate = f"{n / seconds:,.0f}" if key == "alone" or key.startswith("step") else ""
        print(f"{key:<16}{seconds:>10.2f}{rate:>14}")
    print()
    print(f"sequence, {3 * n:,} messages: {sequence_total:.1f} s, of which the scheduler {scheduling:.2f} s")
    print(
        f"per message: sending alone {per_message_alone * 1e6:,.0f} µs, sequence {per_message_sequence * 1e6:,.0f} µs "
        f"→ overhead {per_message_sequence / per_message_alone - 1:+.1%} "
        f"(scheduler alone {scheduling / sequence_total:.1%} of the sequence's time)"
    )
    follow_ups = figures["step 2"] + figures["step 3"]
    print(f"follow-up sends vs step 1: {follow_ups / 2 / figures['step 1'] - 1:+.1%} per message")
    print(f"sink: one message per recipient and step: {seq_ok and alone_ok} ({steps:,} StepSend rows)")

    if not args.keep:
        Campaign.objects.filter(organization=org).delete()
    return 0 if seq_ok and alone_ok else 1


if __name__ == "__main__":
    sys.exit(main())
