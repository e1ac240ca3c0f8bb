from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

import pytest

from searchkit import make_subset


@pytest.fixture
def dataset(tmp_path):
    return make_subset(tmp_path / "data", 10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on loopback (Debian's postgresql; .ci/run installs it)."""
    bins = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    bindir = Path(bins[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="autoseg-pg-"))
    port = _free_port()
    as_root = os.geteuid() == 0

    def run(cmd: str) -> None:
        full = ["su", "postgres", "-c", cmd] if as_root else ["bash", "-c", cmd]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    if as_root:
        shutil.chown(data, "postgres", "postgres")
    os.chmod(data, 0o700)
    log = data.parent / f"{data.name}.log"
    log.touch()
    if as_root:
        shutil.chown(log, "postgres", "postgres")
    run(f"{bindir}/initdb -D {data} -A trust -U postgres")
    run(f"{bindir}/pg_ctl -D {data} -o '-k /tmp -p {port} -c listen_addresses=127.0.0.1' -l {log} -w start")
    run(f"psql -h 127.0.0.1 -p {port} -U postgres -c 'CREATE DATABASE optuna'")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run((["su", "postgres", "-c"] if as_root else ["bash", "-c"])
                       + [f"{bindir}/pg_ctl -D {data} -m fast -w stop"], capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)
        log.unlink(missing_ok=True)
        time.sleep(0.1)
