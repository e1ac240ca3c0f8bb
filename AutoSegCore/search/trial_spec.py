"""The contract between a search and one trial's child process: ``trials/<n>/spec.json``.

The parent writes a :class:`TrialSpec`, the child (:mod:`AutoSegCore.search.trial_process`) reads it; nothing
else travels between them (no command-line options), except a storage password: the spec holds the URL redacted
and the password is in the child's environment only (``storage_url.PASSWORD_ENV``), never on disk.  Each setting travels once:
the epoch budget is the config's ``training.epochs``, the thread count ``threads``, the device ``device``.
The file is versioned and checked when read, so a child never trains half a contract.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from AutoSegCore.errors import ConfigError
from AutoSegCore.utils.io import read_json, write_json

SPEC_FILE = "spec.json"
TRIAL_SPEC_VERSION = 1


@dataclass(frozen=True)
class TrialSpec:
    """One trial as its child process runs it.

    ``config`` is the complete trial config (proxy network applied; ``training.epochs`` is the trial's epoch
    budget).  ``device``: "auto", "cpu", "cuda" or "cuda:N", the device this trial trains on; ``memory_fraction``:
    its share of that GPU's memory when it shares the GPU with other trials (--jobs N on one device; applied in
    the child before its first CUDA allocation), None for none.  ``fingerprint``
    and ``preprocessor``: stage outputs of the search (``fingerprint.json`` and a fitted preprocessor state in
    the work folder), read instead of re-reading every training case; None makes the child fit its own.
    """
    number: int
    trial_id: int
    storage: str
    study_name: str
    strategy: str
    directions: list[str]
    data: str
    config: dict
    train_cases: list[str]
    val_cases: list[str]
    min_epochs: int
    threads: int
    device: str = "auto"
    memory_gb: float | None = None
    memory_fraction: float | None = None
    cache_dir: str | None = None
    resume_from: str | None = None
    fingerprint: str | None = None
    preprocessor: str | None = None
    version: int = field(default=TRIAL_SPEC_VERSION)

    def __post_init__(self) -> None:
        from AutoSegCore.utils.storage_url import redact

        if isinstance(self.storage, str):         # a spec never holds a password, in memory or in spec.json
            object.__setattr__(self, "storage", redact(self.storage))
        self.validate()

    @property
    def epochs(self) -> int:
        """The trial's epoch budget (also the pruner's maximum resource)."""
        return int(self.config["training"]["epochs"])

    @property
    def single_objective(self) -> bool:
        return len(self.directions) == 1

    def validate(self) -> None:
        """Every field of the right kind; a wrong one is a ConfigError naming it (a bug or a foreign file)."""
        def bad(name: str, want: str) -> ConfigError:
            return ConfigError(f"trial spec: {name} = {getattr(self, name)!r} must be {want}",
                               "the trial folder was not written by this version of autoseg search; re-run the search")

        if self.version != TRIAL_SPEC_VERSION:
            raise bad("version", str(TRIAL_SPEC_VERSION))
        for name in ("number", "trial_id", "min_epochs", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name in ("min_epochs", "threads") else 0):
                raise bad(name, "a whole number" + (" ≥ 1" if name in ("min_epochs", "threads") else " ≥ 0"))
        for name in ("storage", "study_name", "strategy", "data", "device"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise bad(name, "a non-empty text")
        if not self.directions or any(d not in ("maximize", "minimize") for d in self.directions):
            raise bad("directions", "a list of 'maximize' / 'minimize'")
        for name in ("train_cases", "val_cases"):
            if not isinstance(getattr(self, name), list) or not all(isinstance(c, str) for c in getattr(self, name)):
                raise bad(name, "a list of case names")
        if not self.train_cases:
            raise bad("train_cases", "at least one case name")
        training = self.config.get("training") if isinstance(self.config, dict) else None
        if not isinstance(training, dict) or isinstance(training.get("epochs"), bool) \
                or not isinstance(training.get("epochs"), int) or training["epochs"] < 1:
            raise bad("config", "a config whose training.epochs is a whole number ≥ 1")
        if self.min_epochs > self.epochs:
            raise bad("min_epochs", f"at most the epoch budget {self.epochs}")
        if self.memory_gb is not None and (isinstance(self.memory_gb, bool) or not isinstance(self.memory_gb, (int, float))
                                           or not self.memory_gb > 0):
            raise bad("memory_gb", "a positive number or null")
        if self.memory_fraction is not None and (isinstance(self.memory_fraction, bool)
                                                 or not isinstance(self.memory_fraction, (int, float))
                                                 or not 0 < self.memory_fraction <= 1):
            raise bad("memory_fraction", "a number in (0, 1] or null")
        for name in ("cache_dir", "resume_from", "fingerprint", "preprocessor"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise bad(name, "a path or null")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrialSpec":
        if not isinstance(data, dict):
            raise ConfigError("trial spec is not a JSON object", "re-run the search")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"trial spec has unknown key(s): {', '.join(unknown)}",
                              "the trial folder was written by another version of autoseg search; re-run the search")
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise ConfigError(f"trial spec lacks {', '.join(missing)}", "re-run the search")
        return cls(**data)

    def write(self, trial_dir: str | Path) -> Path:
        return write_json(Path(trial_dir) / SPEC_FILE, self.to_dict())

    @classmethod
    def read(cls, trial_dir: str | Path) -> "TrialSpec":
        """The spec of ``trial_dir`` (a missing or unreadable file raises as opening it does)."""
        return cls.from_dict(read_json(Path(trial_dir) / SPEC_FILE))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


_REQUIRED = ("number", "trial_id", "storage", "study_name", "strategy", "directions", "data", "config",
             "train_cases", "val_cases", "min_epochs", "threads")


def study_pruner(strategy: str, objectives: int, min_epochs: int, epochs: int):
    """The study's pruner, the one place it is built: the parent's study (a BOHB sampler reads its brackets) and
    the child's (``should_prune``) must agree.  None for several objectives (Optuna prunes single-objective only)."""
    from AutoSegCore.strategies import make_pruner

    return make_pruner(strategy, min_resource=min_epochs, max_resource=epochs) if objectives == 1 else None
