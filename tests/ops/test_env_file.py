"""The checkout's environment file: what `make run` keeps from one run to the next, and how
settings read it for the commands run beside it."""

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from campaigns_project.env import env_file_load, env_file_parse

ROOT = Path(__file__).resolve().parent.parent.parent
CLEARED = ("DEBUG", "SECRET_KEY", "INSTALLATION_ID", "DEMO_ADMIN_PASSWORD", "REDIS_URL", "DATABASE_URL")


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    module = importlib.import_module("run_embedded")
    monkeypatch.setattr(module, "ENV_FILE", tmp_path / "env")
    for name in CLEARED + ("REDIS_KEY_PREFIX", "EMAIL_BACKEND", "EMAIL_FILE_PATH"):
        monkeypatch.delenv(name, raising=False)
    return module


def test_a_second_run_keeps_the_secret_key_installation_id_and_admin_password(runner):
    first = runner.checkout_env()
    runner.env_file_write(first)
    second = runner.checkout_env()

    for name in ("SECRET_KEY", "INSTALLATION_ID", "DEMO_ADMIN_PASSWORD"):
        assert second[name] == first[name]
    assert first["DEBUG"] == "true"
    assert first["INSTALLATION_ID"].startswith("cbo-")
    assert oct(runner.ENV_FILE.stat().st_mode & 0o777) == "0o600"


def test_a_value_given_to_make_run_wins_and_is_remembered(runner, monkeypatch):
    runner.env_file_write(runner.checkout_env())
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/7")
    monkeypatch.setenv("INSTALLATION_ID", "mine")
    runner.env_file_write(runner.checkout_env())
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.delenv("INSTALLATION_ID")

    again = runner.checkout_env()
    assert again["MAKE_RUN_REDIS_URL"] == "redis://127.0.0.1:6379/7"
    assert again["INSTALLATION_ID"] == "mine"


def test_two_checkouts_get_different_installation_ids(runner, monkeypatch):
    first = runner.checkout_env()["INSTALLATION_ID"]
    monkeypatch.setattr(runner, "ROOT", Path("/elsewhere/checkout"))
    assert runner.checkout_env()["INSTALLATION_ID"] != first


def test_the_file_fills_in_only_what_the_environment_does_not_set(tmp_path, monkeypatch):
    path = tmp_path / "env"
    path.write_text("# comment\nSOME_SETTING_A=from-file\n\nSOME_SETTING_B=from-file\n")
    monkeypatch.setenv("SOME_SETTING_B", "from-environment")
    monkeypatch.delenv("SOME_SETTING_A", raising=False)

    env_file_load(path)

    assert os.environ["SOME_SETTING_A"] == "from-file"
    assert os.environ["SOME_SETTING_B"] == "from-environment"
    monkeypatch.delenv("SOME_SETTING_A")


def test_a_malformed_line_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "env"
    path.write_text("GOOD=1\nnot a setting\n")
    with pytest.raises(ImproperlyConfigured, match=r"env, line 2: expected KEY=VALUE"):
        env_file_parse(path)


def test_a_missing_file_is_no_error(tmp_path):
    env_file_load(tmp_path / "absent")


def test_the_file_is_git_ignored_and_kept_out_of_the_docker_image():
    assert ".run/" in (ROOT / ".gitignore").read_text().split()
    assert ".run" in (ROOT / ".dockerignore").read_text().split()


def load_settings(monkeypatch, **env):
    """A fresh copy of the settings module. Every variable the file may set is first put under
    monkeypatch, so what the loader writes into os.environ is undone after the test."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in CLEARED + ("REDIS_KEY_PREFIX",):
        if name not in env:
            monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location(
        f"campaigns_project._settings_env_{len(sys.modules)}", ROOT / "campaigns_project" / "settings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_take_debug_secret_redis_and_installation_from_the_file(tmp_path, monkeypatch):
    path = tmp_path / "env"
    path.write_text("DEBUG=true\nSECRET_KEY=k\nREDIS_URL=redis://127.0.0.1:6390/3\nINSTALLATION_ID=checkout-1\n")
    loaded = load_settings(monkeypatch, ENV_FILE=str(path), TESTING="false")
    assert (loaded.DEBUG, loaded.SECRET_KEY, loaded.REDIS_URL) == (True, "k", "redis://127.0.0.1:6390/3")
    assert (loaded.REDIS_KEY_PREFIX, loaded.CELERY_TASK_DEFAULT_QUEUE) == ("checkout-1:", "checkout-1.default")


def test_the_test_suite_never_reads_the_file(tmp_path, monkeypatch):
    path = tmp_path / "env"
    path.write_text("INSTALLATION_ID=checkout-1\n")
    loaded = load_settings(monkeypatch, ENV_FILE=str(path), TESTING="true")
    assert loaded.INSTALLATION_ID == "cbo"
