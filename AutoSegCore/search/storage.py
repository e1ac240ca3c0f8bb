"""Study storage: an SQLite file in the work folder by default, any Optuna RDB URL (PostgreSQL for many machines).

Creating the schema and the study happens once, guarded by retries, because two processes creating the same
study at once on an empty PostgreSQL database race (``UniqueViolation … studydirection``, stack.md).

A URL's password is never stored or shown (:mod:`AutoSegCore.utils.storage_url`): every URL opened here may be
the redacted one (``u:***@``); :func:`open_storage` connects with the password from the environment or libpq's
``PGPASSWORD`` / ``~/.pgpass``, and its errors name the URL redacted.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna

# Heartbeats and fail_stale_trials are what we want with ask/tell (we record heartbeats ourselves while a child
# runs); Optuna marks them experimental and warns that heartbeats are meant for Study.optimize.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
optuna.logging.set_verbosity(optuna.logging.WARNING)

from AutoSegCore.errors import StorageError
from AutoSegCore.utils.storage_url import connect_url, redact, scrub  # noqa: F401 - redact: this module's API

HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30


def default_storage_url(work_dir: str | Path) -> str:
    """The folder's own SQLite study (``--out``'s ``study.db``), by absolute path."""
    from AutoSegCore.search.search_dir import SearchDir

    return f"sqlite:///{SearchDir(Path(work_dir).resolve()).study_db}"


def open_storage(url: str, *, heartbeat: bool = True, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """Open (and create the schema of) an RDB storage, turning every failure into a StorageError.

    ``must_exist``: a worker joining a study, or a reader — a missing SQLite file is an error, not a new empty
    database left behind (SQLite creates one on connect)."""
    kwargs: dict = {}
    real = connect_url(url)
    if url.startswith("sqlite"):
        path = Path(url.split("sqlite:///", 1)[-1])
        if must_exist and not (path.is_file() and path.stat().st_size > 0):
            raise StorageError(f"no study database at {path}",
                               "give the --storage URL of the study's database (the study's --out/study.db, or "
                               "a PostgreSQL URL for many machines)")
        if path.exists() and path.stat().st_size > 0:
            with open(path, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise StorageError(f"{path} is not an SQLite study database (corrupt or another file)",
                                       "move it away, or point --out/--storage at the right study")
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    if heartbeat:
        kwargs.update(heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
    last: Exception | None = None
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(real, **kwargs)
        except ImportError as exc:
            raise StorageError(f"the driver for '{redact(url).split(':')[0]}' is not installed "
                               f"({scrub(str(exc), url, real)})",
                               "pip install 'AutoSegCore[postgres]' for PostgreSQL") from None
        except Exception as exc:  # sqlalchemy OperationalError/IntegrityError/DatabaseError…
            last = exc
            text = str(exc).lower()
            if "unique" in text or "already exists" in text or "locked" in text:
                time.sleep(0.5 + attempt)     # another process is creating the schema: retry
                continue
            break
    raise StorageError(f"cannot open study storage {redact(url)}: {scrub(first_line(last), url, real)}",
                       "check the URL, that the server is running and reachable, and the credentials (a password "
                       "comes from the URL, AUTOSEG_STORAGE_PASSWORD, PGPASSWORD or ~/.pgpass)")


def create_or_load_study(storage, study_name: str, directions: list[str], sampler, pruner) -> optuna.Study:
    for attempt in range(5):
        try:
            return optuna.create_study(storage=storage, study_name=study_name, directions=directions,
                                       sampler=sampler, pruner=pruner, load_if_exists=True)
        except Exception as exc:
            text = str(exc).lower()
            if attempt < 4 and ("unique" in text or "already exists" in text or "locked" in text):
                time.sleep(0.5 + attempt)
                continue
            raise StorageError(f"cannot create or load study '{study_name}': {first_line(exc)}",
                               "check the storage URL and that the study's directions match") from None
    raise AssertionError("unreachable")


def load_study(storage, study_name: str, sampler=None, pruner=None) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise StorageError(f"no study named '{study_name}' in the storage",
                           f"existing studies: {', '.join(names) or 'none'}; start one with 'autoseg search'") from None


def first_line(exc: BaseException | None) -> str:
    return (str(exc) or exc.__class__.__name__).strip().splitlines()[0][:300] if exc else "unknown error"
