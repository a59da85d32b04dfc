"""`manage.py imap_idle`: wait for replies in every IMAP account as they arrive (IDLE where the
server offers it, polling otherwise), one thread per account. The accounts are read again every
minute, so a mailbox added, changed or removed is picked up without a restart; with none, it
waits for one. The beat task `poll_imap` stays the safety net. Stops on SIGTERM / Ctrl-C or after
--max-seconds, and returns a summary per account."""

import signal
import threading
import time

from django.core.management.base import BaseCommand, CommandError

from tracking.imap import ImapAccount, imap_accounts, imap_watch


class Command(BaseCommand):
    help = (
        "Watch every IMAP account (tracking.imap.imap_accounts) for new mail, by IDLE where the server "
        "offers it and by polling otherwise, and record replies, auto-replies and bounces."
    )
    refresh_seconds = 60.0  # how often the account list is read again

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
        only = set(account)
        if only:
            unknown = only - {a.key for a in imap_accounts()}
            if unknown:
                raise CommandError(f"Unknown IMAP account: {', '.join(sorted(unknown))}")
        watchers: dict[str, tuple[ImapAccount, threading.Event, threading.Thread]] = {}
        retired: list[threading.Thread] = []
        summaries: list[dict] = []

        def refresh() -> None:
            current = {a.key: a for a in imap_accounts() if not only or a.key in only}
            for key, (known, stop, thread) in list(watchers.items()):
                if current.get(key) != known or not thread.is_alive():  # removed, changed or died: ends
                    stop.set()
                    retired.append(thread)
                    del watchers[key]
            for key, one in current.items():
                if key not in watchers:
                    stop = threading.Event()
                    thread = threading.Thread(
                        target=lambda one=one, stop=stop: summaries.append(imap_watch(account=one, stop=stop)),
                        name=f"imap-{key}",
                        daemon=True,
                    )
                    watchers[key] = (one, stop, thread)
                    thread.start()

        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: self.stop())
        deadline = time.monotonic() + max_seconds if max_seconds else None
        next_refresh = 0.0
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if now >= next_refresh:
                    refresh()
                    next_refresh = now + self.refresh_seconds
                self.stopping.wait(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
            for _, stop, thread in watchers.values():
                stop.set()
                retired.append(thread)
            for thread in retired:
                thread.join(timeout=10)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if not summaries:
            return "No IMAP accounts were watched (set IMAP_ACCOUNTS)."
        return "\n".join(
            f"{s['account']}: {s['mode'] or 'not connected'}, {s['polls']} polls, {s['errors']} errors, "
            + (", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items())) or "nothing new")
            for s in sorted(summaries, key=lambda s: s["account"])
        )
