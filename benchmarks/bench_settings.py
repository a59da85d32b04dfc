"""The real settings, with a URLconf that adds the bare reference view (benchmarks/pixel.py)."""

from campaigns_project.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.bench_urls"
