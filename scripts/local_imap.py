#!/usr/bin/env python
"""A private IMAP server (Debian's dovecot-imapd, installed by `make system-deps`) for `make run`
and the tests: its own port on loopback, its config, state and mail under one directory,
passwd-file users, plaintext login allowed (loopback only). `make run` starts one and reads its
INBOX for replies (IMAP_ACCOUNTS); the tests start one per test (tests/tracking/test_imap.py).

    .venv/bin/python scripts/local_imap.py serve --dir .run/imap --port 1143 --password secret
    .venv/bin/python scripts/local_imap.py append --port 1143 --password secret reply.eml

Dovecot refuses root for its login and mail processes, so under root those run as `dovenull` and
`nobody`, each chrooted by dovecot into its own directory here (no access to the parents needed);
as any other user, everything runs as that user, without chroot.
"""

import argparse
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER = "demo"
DOVECOT = "/usr/sbin/dovecot"


def available() -> bool:
    return bool(shutil.which("dovecot") or Path(DOVECOT).exists()) and Path("/usr/lib/dovecot/imap").exists()


def configure(root: Path, *, port: int, password: str, user: str = USER, extra: str = "") -> Path:
    """Write the config, the passwd file and the directories; returns the config's path."""
    for name in ("state", "mail"):
        (root / name).mkdir(parents=True, exist_ok=True)
    # Dovecot's unix sockets live in base_dir, and a socket path has at most 107 bytes: a deep root
    # (a test's tmp_path under pytest-xdist) would pass it. So base_dir is short, one per root.
    run_dir = Path(tempfile.gettempdir()) / f"cbo-imap-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    run_dir.mkdir(mode=0o755, exist_ok=True)
    passwd = root / "passwd"
    passwd.write_text(f"{user}:{{PLAIN}}{password}\n")
    passwd.chmod(0o600)
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        login_user, mail_user = "dovenull", "nobody"
        nobody = pwd.getpwnam(mail_user)
        for directory in [root / "mail", *(root / "mail").rglob("*")]:
            os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        # Paths inside the chroot: the mail processes see the mail directory as /.
        chroot = f"mail_chroot = {root}/mail\nvalid_chroot_dirs = {root}/mail\n"
        home, login_chroot = "/%u", "login"
    else:
        login_user = mail_user = me
        chroot, home, login_chroot = "", f"{root}/mail/%u", ""
    mail_group = grp.getgrgid(pwd.getpwnam(mail_user).pw_gid).gr_name
    my_group = grp.getgrgid(os.getegid()).gr_name
    config = root / "dovecot.conf"
    config.write_text(f"""
base_dir = {run_dir}
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
{chroot}mail_location = maildir:~/
default_login_user = {login_user}
default_internal_user = {me}
default_internal_group = {my_group}
mail_uid = {mail_user}
mail_gid = {mail_group}
first_valid_uid = 1
first_valid_gid = 1
mailbox_idle_check_interval = 1 secs
auth_failure_delay = 0 secs
{extra}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = home={home}
}}
service imap-login {{
  chroot = {login_chroot}
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
    return config


def start(root: Path, *, port: int, password: str, user: str = USER, extra: str = "") -> subprocess.Popen:
    """Dovecot in the foreground as a child; returns once it greets on `port` (or raises)."""
    config = configure(root, port=port, password=password, user=user, extra=extra)
    binary = shutil.which("dovecot") or DOVECOT
    process = subprocess.Popen(
        [binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            log = root / "dovecot.log"
            raise RuntimeError(f"dovecot exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"* OK"):
                    return process
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"dovecot did not answer on port {port} in 15 s")
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def append(*, port: int, password: str, raw: bytes, user: str = USER, folder: str = "INBOX") -> None:
    """Put a message in the mailbox, as a mail server's delivery would."""
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10) as client:
        client.login(user, password)
        client.append(folder, raw)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run dovecot until SIGTERM / Ctrl-C")
    serve.add_argument("--dir", required=True, type=Path)
    put = commands.add_parser("append", help="append a message file to the INBOX")
    put.add_argument("file", type=Path)
    for sub in (serve, put):
        sub.add_argument("--port", type=int, required=True)
        sub.add_argument("--password", required=True)
        sub.add_argument("--user", default=USER)
    args = parser.parse_args(argv)
    if args.command == "append":
        append(port=args.port, password=args.password, raw=args.file.read_bytes(), user=args.user)
        print(f"appended {args.file} to {args.user}'s INBOX")
        return 0
    process = start(args.dir.resolve(), port=args.port, password=args.password, user=args.user)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that `finally` stops dovecot
    print(f"ready {args.port}", flush=True)
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
