"""A study URL's password is never stored or shown: not in any file of the study folder (binary ones too), the
events, the study's attributes (optuna-dashboard shows them), a trial's spec, the report or any error message.
The trials still connect (the password reaches them in their environment), a resume with the same URL works, and
a mismatch error names the URL redacted.  End to end against a real PostgreSQL server that requires the password."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

import pytest

from searchkit import TINY, autoseg, events, load

PASSWORD = "hunter2"


# ------------------------------------------------------------------------------------------------ URLs, no server
LEAKY = [
    "postgresql://u:hunter2@db/x",
    "postgresql+psycopg://u:hunter2@db:5432/x?sslmode=require",
    "postgresql://db/x?user=u&password=hunter2",
    "postgresql://db/x?sslmode=require&PASSWORD=hunter2&application_name=a",
    "postgresql://u:hunter%402@db/x",               # an escaped '@' in the password
    "postgresql://u:hun@ter2@db/x",                 # an unescaped one (SQLAlchemy ends the password at the first)
    "postgresql//u:hunter2@db/x",                   # malformed: SQLAlchemy cannot parse it
    "u:hunter2@db",
    "mysql+pymysql://u:hunter2@db/x?charset=utf8mb4",
]


@pytest.mark.parametrize("url", LEAKY)
def test_redact_hides_every_password(url):
    from AutoSegCore.utils.storage_url import redact, scrub

    shown = redact(url)
    assert "hunter" not in shown and "ter2" not in shown and "***" in shown, shown
    assert redact(shown) == shown                               # stored, read back, stored again: stable
    message = f"could not connect to '{url}': password authentication failed (url={url})"
    assert "hunter" not in scrub(message, url) and "ter2" not in scrub(message, url)


@pytest.mark.parametrize("url", ["sqlite:////tmp/a folder/study%.db", "postgresql://u@db/x",
                                 "postgresql+psycopg://postgres@127.0.0.1:5432/optuna", "postgresql:///x"])
def test_urls_without_a_password_are_kept_exactly(url):
    from AutoSegCore.utils.storage_url import child_env, connect_url, redact

    assert redact(url) == url and connect_url(url) == url and child_env(url) == {}


def test_the_password_comes_back_only_from_the_environment(monkeypatch):
    """What a trial process does with the redacted URL of its spec: the password its parent put in its
    environment, else none (libpq then reads PGPASSWORD / ~/.pgpass)."""
    from sqlalchemy.engine import make_url

    from AutoSegCore.utils.storage_url import PASSWORD_ENV, child_env, connect_url, redact

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    for url in ("postgresql+psycopg://u:hunter2@db:5432/x?sslmode=require", "postgresql://db/x?user=u&password=hunter2"):
        assert "hunter2" not in connect_url(redact(url)) and "***" not in connect_url(redact(url))
        with monkeypatch.context() as m:
            for k, v in child_env(url).items():
                m.setenv(k, v)
            again = make_url(connect_url(redact(url)))
        assert (again.password or again.query.get("password")) == "hunter2"
        assert again.host == "db" and again.database == "x"


def test_settings_specs_and_resume_errors_never_hold_it(tmp_path):
    from AutoSegCore.errors import ConfigError
    from AutoSegCore.proxy.fidelity import Fidelity
    from AutoSegCore.search.resume import check_same_settings
    from AutoSegCore.search.settings import SearchSettings
    from AutoSegCore.search.trial_spec import TrialSpec

    url = "postgresql+psycopg://u:hunter2@db/x"
    s = SearchSettings(data=str(tmp_path), out=str(tmp_path / "out"), storage=url, space="proxy-hpo",
                       strategy="random")
    assert s.storage_url() == url                               # in memory: what the search connects with
    assert "hunter2" not in json.dumps(s.to_dict()) and "hunter2" not in repr(s)
    spec = TrialSpec(number=0, trial_id=1, storage=url, study_name="x", strategy="random", directions=["maximize"],
                     data=str(tmp_path), config={"training": {"epochs": 2}}, train_cases=["a"], val_cases=["b"],
                     min_epochs=1, threads=1)
    assert spec.storage == "postgresql+psycopg://u:***@db/x"
    assert "hunter2" not in spec.write(tmp_path).read_text()
    with pytest.raises(ConfigError) as err:
        check_same_settings({"space": "unet-pipeline", "settings": s.to_dict()}, s, Fidelity.parse("full", "full"), url)
    assert "u:***@db/x" in err.value.message and "hunter2" not in str(err.value)


@pytest.mark.parametrize("url", ["postgresql+psycopg://u:hunter2@127.0.0.1:1/x", "postgresql//u:hunter2@db/x",
                                 "nosuchdriver://u:hunter2@db/x"])
def test_storage_errors_name_the_url_redacted(url):
    """Real connection attempts (a closed port, a malformed URL, an unknown driver): one line, no password."""
    from AutoSegCore.errors import StorageError
    from AutoSegCore.search.storage import open_storage

    with pytest.raises(StorageError) as err:
        open_storage(url, heartbeat=False)
    text = f"{err.value.message} {err.value.hint}"
    assert "hunter2" not in text and "\n" not in err.value.message, text


# ------------------------------------------------------------------------------------------------ a real server
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def secret_postgres():
    """A throwaway PostgreSQL on loopback whose every connection needs the password (scram-sha-256)."""
    bins = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    psycopg = pytest.importorskip("psycopg")
    bindir = Path(bins[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="autoseg-pgpw-"))
    pwfile, log = data.parent / f"{data.name}.pw", data.parent / f"{data.name}.log"
    pwfile.write_text(PASSWORD + "\n")
    log.touch()
    port = _free_port()
    as_root = os.geteuid() == 0
    for path in (data, pwfile, log):
        if as_root:
            shutil.chown(path, "postgres", "postgres")
    os.chmod(data, 0o700)

    def run(cmd: str) -> None:
        subprocess.run(["su", "postgres", "-c", cmd] if as_root else ["bash", "-c", cmd], check=True,
                       capture_output=True, timeout=120)

    run(f"{bindir}/initdb -D {data} -A scram-sha-256 -U postgres --pwfile={pwfile}")
    run(f"{bindir}/pg_ctl -D {data} -o '-k /tmp -p {port} -c listen_addresses=127.0.0.1' -l {log} -w start")
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=PASSWORD, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run((["su", "postgres", "-c"] if as_root else ["bash", "-c"])
                       + [f"{bindir}/pg_ctl -D {data} -m fast -w stop"], capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)
        pwfile.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
        time.sleep(0.1)


def _leaks(*roots: Path, texts: tuple[str, ...] = ()) -> list[str]:
    """Every file under ``roots`` (hidden and binary ones too) and every text that holds the password."""
    needle = PASSWORD.encode()
    found = [str(p) for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*")))
             if p.is_file() and needle in p.read_bytes()]
    return found + [t[:200] for t in texts if PASSWORD in t]


def _study_text(url: str, name: str) -> str:
    study = load(url, name)
    parts = [study.user_attrs, study._storage.get_study_system_attrs(study._study_id)]
    for t in study.trials:
        parts += [t.user_attrs, t.system_attrs, t.params]
    return json.dumps(parts, default=str)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_search_with_a_password_url_leaves_it_nowhere(secret_postgres, dataset, tmp_path, monkeypatch):
    url, name = secret_postgres, "secret-study"
    # the URL is the only place the password is: nothing for libpq to find on its own
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("AUTOSEG_STORAGE_PASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    out, ev = tmp_path / "run", tmp_path / "events.jsonl"
    shown = url.replace(f":{PASSWORD}@", ":***@")
    r = autoseg("search", dataset, *TINY, "--trials", "2", "--no-final", "--storage", url, "--study-name", name,
                "--out", out, "--events", ev)
    assert r.returncode == 0, r.stderr[-3000:]
    # the trials connected: the password reached them, in their environment only
    assert [t.state.name for t in load(url, name).trials] == ["COMPLETE", "COMPLETE"]
    search = json.loads((out / "search.json").read_text())
    assert search["storage"] == shown
    assert json.loads((out / "trials" / "0000" / "spec.json").read_text())["storage"] == shown
    assert load(url, name).user_attrs["settings"]["storage"] == shown
    assert [e["storage"] for e in events(ev) if e["event"] == "study_started"] == [shown]
    assert (out / "report.html").is_file()            # the search's own report connected with its in-memory URL
    assert not _leaks(out, ev, texts=(r.stdout, r.stderr, _study_text(url, name)))

    # `autoseg report` later: search.json has no password, so it needs one from the environment
    r = autoseg("report", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr and shown in r.stderr, r.stderr[-2000:]
    assert "PGPASSWORD" in r.stderr and not _leaks(texts=(r.stdout, r.stderr))
    r = autoseg("report", out, env_extra={"PGPASSWORD": PASSWORD})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "optuna-dashboard " + shown in (out / "report.html").read_text()

    # a resume with the same URL works; a changed setting is refused with the URL redacted
    r = autoseg("search", dataset, *TINY, "--trials", "3", "--no-final", "--storage", url, "--study-name", name,
                "--out", out, "--events", ev)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(load(url, name).trials) == 3
    r = autoseg("search", dataset, *TINY, "--epochs", "3", "--trials", "4", "--no-final", "--storage", url,
                "--study-name", name, "--out", out, "--events", ev)
    assert r.returncode == 2 and "Traceback" not in r.stderr and f"the study in {shown}" in r.stderr, r.stderr
    errors = [e for e in events(ev) if e["event"] == "error"]
    assert errors and shown in json.dumps(errors[-1])
    # a wrong password: refused by the server, and not echoed either
    wrong = url.replace(PASSWORD, "wrongpass1")
    r = autoseg("search", dataset, *TINY, "--trials", "1", "--no-final", "--storage", wrong, "--study-name", name,
                "--out", tmp_path / "wrong")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "wrongpass1" not in r.stderr, r.stderr
    assert not _leaks(out, ev, texts=(r.stdout, r.stderr, _study_text(url, name)))


def test_the_slicer_scene_does_not_keep_the_storage_url():
    """The module's parameter node (saved with the scene) has no storage field, and the panel sends a study URL's
    password to the engine in its environment: not on the command line the log shows and `ps` lists."""
    import ast
    import xml.etree.ElementTree as ET

    from shared_data import REPO

    source = (REPO / "AutoSegSearch" / "AutoSegSearch.py").read_text()
    node = next(n for n in ast.walk(ast.parse(source))
                if isinstance(n, ast.ClassDef) and n.name == "AutoSegSearchParameterNode")
    fields = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    assert "storage" not in fields and "outputFolder" in fields
    ui = ET.parse(REPO / "AutoSegSearch" / "Resources" / "UI" / "AutoSegSearch.ui")
    assert "storage" not in {p.find("string").text for p in ui.iter("property") if p.get("name") == "SlicerParameterName"}
    assert "split_password(self.ui.storageLineEdit.text" in source
