"""A throwaway PostgreSQL server for tests: its own cluster (initdb) in a temporary folder, started with pg_ctl on a
free loopback port with password authentication, one fresh database per test, stopped and deleted after."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import free_port

USER, PASSWORD = "catdog", "s3cret"
# Debian's postgresql package keeps initdb and pg_ctl out of PATH, under /usr/lib/postgresql/<major>/bin
DEBIAN_BIN = Path("/usr/lib/postgresql")
SKIP = "a PostgreSQL server to test against: `apt-get install postgresql` (.ci/run does)"


def server_bin() -> Path | None:
    """The folder of initdb and pg_ctl: from PATH, else Debian's newest /usr/lib/postgresql/<major>/bin."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl", path=str(Path(initdb).resolve().parent)):
        return Path(initdb).resolve().parent
    majors = [p for p in DEBIAN_BIN.glob("*/bin/pg_ctl") if p.parts[-3].isdigit()]
    return max(majors, key=lambda p: int(p.parts[-3])).parent if majors else None


def server_user() -> dict:
    """subprocess arguments that run the server as an unprivileged user: initdb and postgres refuse root, so as
    root they run as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip(f"running as root and there is no `postgres` user to run the server as: {SKIP}")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields the URL of its maintenance database `postgres` (postgresql://user:pass@host:port/)."""
    pytest.importorskip("psycopg", reason="no PostgreSQL driver (psycopg): pip install -e '.[sweeps]'")
    bin_dir = server_bin()
    if bin_dir is None:
        pytest.skip(f"no initdb/pg_ctl: {SKIP}")
    as_server = server_user()
    # not pytest's tmp_path: that sits in a folder only root may enter
    d = Path(tempfile.mkdtemp(prefix="catdog-pg-"))
    if as_server:
        os.chown(d, as_server["user"], as_server["group"])
    (d / "pw").write_text(PASSWORD)
    if as_server:
        os.chown(d / "pw", as_server["user"], as_server["group"])

    def run(tool: str, *args: str) -> None:
        """initdb or pg_ctl on this cluster's data folder."""
        command = [str(bin_dir / tool), "-D", str(d / "data"), *args]
        proc = subprocess.run(command, capture_output=True, text=True, **as_server)
        assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout}\n{proc.stderr}"

    port = free_port()
    try:
        # --no-sync and an immediate stop: the cluster is deleted after (a checkpoint at a fast stop took 4.6 s)
        run("initdb", "-U", USER, f"--pwfile={d / 'pw'}", "--auth=scram-sha-256", "--no-sync")
        # loopback TCP only, the unix socket in this folder (not /var/run/postgresql, which may not exist)
        run("pg_ctl", "-o", f"-h 127.0.0.1 -p {port} -k {d}", "-l", str(d / "server.log"), "-w", "start")
        try:
            yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"
        finally:
            run("pg_ctl", "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def new_database(server_url: str) -> str:
    """Create a database of a new name on the server and return its URL."""
    import psycopg

    name = f"study_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"
