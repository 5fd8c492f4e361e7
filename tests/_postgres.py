"""A real PostgreSQL server for the tests, started in a temporary folder and stopped after.

It runs Debian's (or any) ``initdb`` and ``pg_ctl``: trust authentication on 127.0.0.1 and a
Unix socket in the same folder, no fsync (a test server's data need not survive a crash).
initdb refuses to run as root, so under root the server runs as the ``postgres`` user that
Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["postgres_binaries", "running_postgres"]


def postgres_binaries() -> tuple[Path | None, str]:
    """The folder of ``initdb`` and ``pg_ctl``, or None and why not."""
    candidates = [shutil.which("pg_ctl")] + sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            folder = Path(candidate).resolve().parent
            if (folder / "initdb").is_file():
                return folder, ""
    return None, ("no PostgreSQL server binaries (initdb, pg_ctl) on this machine: install "
                  "Debian's postgresql package (.ci/run does)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_postgres():
    """Yield the URL of a fresh server's ``postgres`` database; stop and remove it after."""
    binaries, reason = postgres_binaries()
    if binaries is None:
        raise FileNotFoundError(reason)
    root = Path(tempfile.mkdtemp(prefix="skinestimator-postgres-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")  # KeyError: no such user, said by the caller
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    try:
        subprocess.run(run_as + [str(binaries / "initdb"), "-D", str(data), "-A", "trust",
                                 "-U", "postgres", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, text=True, timeout=120)
        subprocess.run(run_as + [
            str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
            "-t", "60", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
                              "-c fsync=off -c max_connections=100",
            "start"], check=True, capture_output=True, text=True, timeout=120)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(run_as + [str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
