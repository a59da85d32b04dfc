"""`manage.py imap_idle`: wait for replies in every IMAP account as they arrive (IDLE where the
server offers it, polling otherwise), one thread per account; the beat task `poll_imap` stays the
safety net for accounts this process does not watch. Stops on SIGTERM / Ctrl-C or --max-seconds."""

import signal
import threading
import time

from django.core.management.base import BaseCommand, CommandError

from tracking.imap import imap_accounts, imap_watch


class Command(BaseCommand):
    help = (
        "Watch every IMAP account (tracking.imap.imap_accounts) for new mail, by IDLE where the server "
        "offers it and by polling otherwise, and record replies, auto-replies and bounces."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()

    def stop(self) -> None:
        """End the watch (SIGTERM does the same); handle() returns once every thread has stopped."""
        self.stopping.set()

    def add_arguments(self, parser):
        parser.add_argument("--account", action="append", default=[], help="Only this account key (repeatable).")
        parser.add_argument(
            "--max-seconds", type=float, default=0, help="Stop after this many seconds (default: run until stopped)."
        )

    def handle(self, *args, account=(), max_seconds=0, **options) -> str:
        accounts = imap_accounts()
        if account:
            unknown = set(account) - {a.key for a in accounts}
            if unknown:
                raise CommandError(f"Unknown IMAP account: {', '.join(sorted(unknown))}")
            accounts = [a for a in accounts if a.key in account]
        if not accounts:
            return "No IMAP accounts to watch (set IMAP_ACCOUNTS)."
        stop = self.stopping
        summaries: list[dict] = []

        def watch(one):
            summaries.append(imap_watch(account=one, stop=stop))

        threads = [threading.Thread(target=watch, args=(a,), name=f"imap-{a.key}", daemon=True) for a in accounts]
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + max_seconds if max_seconds else None
        try:
            while any(t.is_alive() for t in threads) and not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stop.wait(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        lines = [
            f"{s['account']}: {s['mode'] or 'not connected'}, {s['polls']} polls, {s['errors']} errors, "
            + (", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items())) or "nothing new")
            for s in sorted(summaries, key=lambda s: s["account"])
        ]
        return "\n".join(lines)
