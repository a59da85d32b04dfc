#!/usr/bin/env python
"""A local SMTP sink that accepts every message and appends one line per accepted message (its
recipient) to a log file, written through at once, so a reader can count messages per address
even after the sink or a sender was killed. Used by the fault tests and benchmarks/pipeline.py.

    .venv/bin/python scripts/smtp_sink.py --port 2525 --log /tmp/sink.log [--delay-ms 20]

It prints "ready <port>" once it listens. SIGTERM stops it.
"""

import argparse
import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class CountingHandler:
    def __init__(self, log, maildir: Path | None = None, delay: float = 0.0) -> None:
        self.log = log
        self.maildir = maildir
        self.delay = delay
        self.lock = threading.Lock()
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        if self.delay:  # a slower server: the fault tests' send batches last long enough to be hit
            await asyncio.sleep(self.delay)
        with self.lock:
            for address in envelope.rcpt_tos:
                self.log.write(address.lower() + "\n")
            self.log.flush()
            if self.maildir is not None:  # the whole message, for a person to read (make run)
                self.count += 1
                name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self.count}.eml"
                (self.maildir / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True, help="file to append one line per accepted message to")
    parser.add_argument("--delay-ms", type=float, default=0, help="wait this long before accepting each message")
    parser.add_argument("--maildir", help="also write each accepted message to a file in this directory")
    args = parser.parse_args()
    maildir = Path(args.maildir) if args.maildir else None
    if maildir is not None:
        maildir.mkdir(parents=True, exist_ok=True)
    with open(args.log, "a", buffering=1) as log:
        controller = Controller(
            CountingHandler(log, maildir, args.delay_ms / 1000), hostname="127.0.0.1", port=args.port
        )
        controller.start()
        print(f"ready {args.port}", flush=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
        stopped.wait()
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
