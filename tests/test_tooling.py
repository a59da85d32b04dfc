"""The tools that hold the line are wired where the issue says: mypy in pyproject and `make test`,
a pre-commit config that parses and runs ruff and the type check, `make test-fast` beside the full
`make test`, which CI runs."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from pre_commit.clientlib import load_config

ROOT = Path(__file__).resolve().parent.parent


def make_rule(target: str) -> tuple[str, list[str]]:
    """A Makefile rule's prerequisites and recipe lines."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:([^\n]*)\n((?:\t[^\n]*\n)*)", text, re.MULTILINE)
    assert match, f"no rule for {target}"
    return match.group(1), [line.strip() for line in match.group(2).splitlines()]


def test_mypy_covers_every_application_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert "mypy_django_plugin.main" in config["plugins"]
    assert "mypy_drf_plugin.main" in config["plugins"]
    listed = set(config["files"])
    wanted = {path.parent.name for path in ROOT.glob("*/apps.py")}  # every Django app, the project's too
    assert {"campaigns", "queue_control", "tracking", "integrations", "campaigns_project"} <= wanted
    assert wanted <= listed, f"not type-checked: {sorted(wanted - listed)}"
    assert config["exclude"] == ["/migrations/"]
    for entry in listed:
        assert (ROOT / entry).exists(), f"pyproject's mypy files name a missing path: {entry}"


def test_make_test_runs_lint_and_types_and_ci_runs_make_test():
    prerequisites, recipe = make_rule("test")
    assert {"lint", "typecheck"} <= set(prerequisites.split())
    assert any(line.startswith("$(VENV)/bin/pytest") and " -m " not in line for line in recipe)
    assert make_rule("typecheck")[1] == ["$(VENV)/bin/mypy"]
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()


def test_make_test_fast_skips_browser_and_slow_tests():
    prerequisites, recipe = make_rule("test-fast")
    assert {"lint", "typecheck"} <= set(prerequisites.split())
    (pytest_line,) = [line for line in recipe if "pytest" in line]
    assert '-m "not browser and not slow and not faults"' in pytest_line


def test_every_phony_target_has_a_rule():
    text = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE).group(1).split()
    rules = set(re.findall(r"^([\w-]+):", text, re.MULTILINE))
    assert set(phony) - rules == set()


def test_pre_commit_config_parses_and_runs_ruff_and_mypy():
    config = load_config(str(ROOT / ".pre-commit-config.yaml"))  # raises on an invalid config
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy", "ruff-check-migrations"} <= set(hooks)
    assert hooks["mypy"]["entry"].endswith("mypy")
    assert "ruff format --check" in hooks["ruff-format"]["entry"]


def test_hand_written_migrations_are_linted():
    """The migrations ruff's config skips, but that hold RunPython/RunSQL code, pass ruff."""
    paths = [
        str(path)
        for path in sorted(ROOT.glob("*/migrations/0*.py"))
        if re.search(r"RunPython|RunSQL", path.read_text())
    ]
    assert paths
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--extend-ignore", "E501", *paths],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
