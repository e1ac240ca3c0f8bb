"""Open what a search left in its work folder — ``search.json`` and the study it names — with clear errors.

Reading never writes: a missing SQLite file is reported instead of being created empty (which opening an
Optuna RDB storage would otherwise do).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import optuna

from AutoSegCore.errors import ConfigError, StorageError
from AutoSegCore.search.search_dir import STUDY_DB, SearchDir


@dataclass
class SearchFolder:
    """A search's work folder: its ``search.json`` settings and the loaded study."""
    path: Path
    settings: dict
    study: optuna.Study

    @property
    def storage_url(self) -> str:
        return self.settings["storage"]


def read_search_json(work_dir: str | Path) -> dict:
    work = Path(work_dir)
    if not work.is_dir():
        raise ConfigError(f"{work} is not a folder", "pass the --out folder of an 'autoseg search' run")
    path = SearchDir(work).settings
    if not path.is_file():
        raise ConfigError(f"{path} not found: {work} is not a search work folder",
                          "pass the --out folder of an 'autoseg search' run (it holds search.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.__class__.__name__})",
                          "re-run 'autoseg search' with the same --out to rewrite it") from None
    if not isinstance(data, dict) or not data.get("study_name"):
        raise ConfigError(f"{path} has no 'study_name'", "re-run 'autoseg search' with the same --out to rewrite it")
    from AutoSegCore.search.storage import default_storage_url

    if not data.get("storage") or _is_default_storage(data):
        # the folder's own study.db, wherever the folder is now: a moved folder still opens, and a copy without
        # its study.db is an error instead of silently reporting the original's study
        data["storage"] = default_storage_url(work)
    return data


def _is_default_storage(data: dict) -> bool:
    """Whether the search used ``--out``'s own study.db (no ``--storage``).  search.json says so since
    2026-12-01; older ones stored only the absolute URL, which names study.db in a folder called like --out."""
    if "storage_is_default" in data:
        return bool(data["storage_is_default"])
    url, out = str(data.get("storage")), data.get("out")
    if not url.startswith("sqlite:///") or not out:
        return False
    db = Path(url[len("sqlite:///"):])
    return db.name == STUDY_DB and db.parent.name == Path(str(out)).name


def open_search_folder(work_dir: str | Path, storage: str | None = None) -> SearchFolder:
    """Load ``search.json`` and its study read-only; ConfigError / StorageError name what is wrong.

    search.json holds the storage URL without its password; ``storage``, the same URL with it (the search that
    just ran passes its own), is used to connect when it redacts to the stored one.  Otherwise the password
    comes from ``AUTOSEG_STORAGE_PASSWORD``, ``PGPASSWORD`` or ``~/.pgpass`` (``storage.open_storage``)."""
    from AutoSegCore.search.storage import first_line, load_study, open_storage, redact, scrub

    work = Path(work_dir)
    settings = read_search_json(work)
    url = str(settings["storage"])
    if storage and redact(storage) == redact(url):
        url = storage
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        if not db.is_file() or db.stat().st_size == 0:
            raise StorageError(f"study database {db} is missing or empty",
                               "point search.json 'storage' at the study, or re-run 'autoseg search'")
    try:
        study = load_study(open_storage(url, heartbeat=False), settings["study_name"])
        study.get_trials(deepcopy=False)       # touch the tables: a damaged file fails here, not mid-report
    except StorageError:
        raise
    except Exception as exc:  # sqlalchemy DatabaseError and friends: a corrupt or foreign database
        raise StorageError(f"cannot read study '{settings['study_name']}' from {redact(url)}: {scrub(first_line(exc), url)}",
                           "the study file may be corrupt; restore it or re-run the search into a new --out") from None
    return SearchFolder(work, settings, study)
