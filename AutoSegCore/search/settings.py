"""Everything that defines a search, stored as ``search.json`` and as study user attributes so that a
re-run resumes and a worker on another machine joins with the same definition."""
from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from AutoSegCore.errors import ConfigError
from AutoSegCore.utils.device import DEVICE_NAME


def _whole(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} = {value!r} must be a whole number", f"e.g. {name}=2")


def _checked_base_config(base) -> dict:
    """The base config as a dict, checked now (merged over the defaults, as every trial's will be): a bad value
    must not leave a study behind that then refuses the corrected re-run as 'a different base config'."""
    from AutoSegCore.config import load_config, make_config

    if isinstance(base, (str, Path)):
        return load_config(base)
    if base is None:
        return {}
    if not isinstance(base, dict):
        raise ConfigError(f"base_config must be a dict of sections or a config file path, not {type(base).__name__}",
                          "e.g. {'training': {'lr': 0.003}} or 'Resources/Configs/recipe.yaml'")
    make_config(base)
    return base


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?")


def parse_duration(text: str | None, option: str = "duration") -> float | None:
    """'90s', '30m', '2h', '1h30m' or plain seconds → seconds above zero; None → None.

    An empty text, a repeated or out-of-order unit ('1m1m', '30s2h') or zero is refused rather than read as
    "no limit" or "stop at once"."""
    if text is None:
        return None
    s = str(text).strip().lower().replace(" ", "")
    hint = "use e.g. 90s, 30m, 2h or 1h30m"
    if re.fullmatch(_NUMBER, s):
        seconds = float(s)
    else:
        match = _DURATION.fullmatch(s)
        if not s or not match:
            raise ConfigError(f"{option} '{text}' is not a duration", hint)
        h, m, sec = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * h + 60 * m + sec
    if not seconds > 0:
        raise ConfigError(f"{option} '{text}' must be a duration longer than zero", hint)
    return seconds


@dataclass
class SearchSettings:
    """Everything that defines a search (what ``autoseg search`` builds from its options; ``run_search`` takes it).

    Budgets: ``trials`` (None: until ``time_limit``), ``time_limit`` / ``final_time`` / ``trial_timeout`` in
    seconds or as text ('90s', '30m', '1h30m'); ``epochs`` is each trial's maximum (the fidelity unit),
    ``min_epochs`` the Hyperband minimum (default 2, or ``epochs`` when smaller).  ``proxy_data`` /
    ``proxy_net`` pick the proxy rung ('mi+roi:0.25', 'levels=3,width=0.25', 'full').  ``base_config`` is the
    config the space's points are merged over: a dict of sections, or a YAML/JSON file path.  ``holdout``: case
    names neither the search nor the final training may see.  Every value is checked here, before anything is
    written (a ``ConfigError`` naming it), as the command line does.
    """
    data: str
    out: str
    space: str = "unet-pipeline"
    strategy: str = "bohb"
    proxy_data: str = "full"
    proxy_net: str = "full"
    trials: int | None = 20
    time_limit: float | None = None          # seconds for the search phase (hard: running trials stopped, re-queued)
    jobs: int = 1
    storage: str | None = field(default=None, repr=False)   # may hold a password: stored and shown redacted
    study_name: str | None = None
    epochs: int = 20                          # maximum budget per trial (epochs are the fidelity unit)
    min_epochs: int | None = None             # BOHB/Hyperband minimum budget (None: 2, or epochs when smaller)
    steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "auto"
    devices: str | None = None                # GPUs the trials spread over (--devices; None: from device)
    trial_timeout: float | None = None        # seconds; a trial past it is killed and recorded as failed
    trial_memory_gb: float | None = None      # per trial: RLIMIT_AS on the CPU (Linux), a GPU memory cap on CUDA
    val_fraction: float = 0.2
    base_config: dict = field(default_factory=dict)
    final_top_k: int = 1
    final_epochs: int | None = None
    final_time: float | None = None           # seconds shared by the final trainings; each lr schedule ends on its share
    final_steps_per_epoch: int | None = None
    final_folds: int = 0
    final_tta: str = "auto"                   # flip TTA of best/: auto (decided from validation) | on | off
    final: bool = True
    holdout: list[str] = field(default_factory=list)   # cases the search and the final training never see
    plan: bool = True                         # trials merged over the dataset's plan (False: the bare defaults)
    plan_trial: bool = True                   # a fresh study's first trial is the planned recipe (when expressible)

    def __post_init__(self) -> None:
        for name in ("jobs", "epochs", "seed", "final_top_k", "final_folds"):
            _whole(name, getattr(self, name))
        for name in ("trials", "min_epochs", "steps_per_epoch", "final_epochs", "final_steps_per_epoch"):
            if getattr(self, name) is not None:
                _whole(name, getattr(self, name))
        for name in ("time_limit", "final_time", "trial_timeout"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, parse_duration(value, name))
            elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                        or not math.isfinite(value) or not value > 0):
                raise ConfigError(f"{name} = {value!r} must be a positive number of seconds (or a text like '30m')",
                                  f"e.g. {name}=1800")
        if self.min_epochs is None:
            self.min_epochs = min(2, self.epochs)
        if self.jobs < 1:
            raise ConfigError(f"--jobs {self.jobs} must be ≥ 1", "e.g. --jobs 2")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials {self.trials} must be ≥ 1", "e.g. --trials 20")
        if self.trials is None and self.time_limit is None:
            raise ConfigError("a search needs a budget: trials or time_limit (both None would never stop)",
                              "e.g. trials=20, or time_limit='2h' (the command line: --trials 20 or --time 2h)")
        if self.epochs < 1 or self.min_epochs < 1:
            raise ConfigError(f"epochs {self.min_epochs}..{self.epochs} are not a valid budget range",
                              "use 1 ≤ --min-epochs ≤ --epochs")
        if self.min_epochs > self.epochs:
            raise ConfigError(f"--min-epochs {self.min_epochs} is more than --epochs {self.epochs}",
                              "use 1 ≤ --min-epochs ≤ --epochs")
        for name in ("steps_per_epoch", "final_epochs", "final_steps_per_epoch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} = {getattr(self, name)} must be ≥ 1", f"e.g. {name}=25, or None")
        if self.final_top_k < 1:
            raise ConfigError(f"--final-top-k {self.final_top_k} must be ≥ 1", "e.g. --final-top-k 3")
        if self.final_folds < 0 or self.final_folds == 1:
            raise ConfigError(f"--final-folds {self.final_folds} must be 0 (none) or ≥ 2", "e.g. --final-folds 5")
        if self.trial_memory_gb is not None and not (isinstance(self.trial_memory_gb, (int, float))
                                                     and not isinstance(self.trial_memory_gb, bool)
                                                     and math.isfinite(self.trial_memory_gb)
                                                     and self.trial_memory_gb > 0):
            raise ConfigError(f"trial_memory_gb = {self.trial_memory_gb!r} must be a positive number",
                              "e.g. trial_memory_gb=8")
        if self.final_tta not in ("auto", "on", "off"):
            raise ConfigError(f"--final-tta {self.final_tta!r} is not auto, on or off", "e.g. --final-tta auto")
        if not DEVICE_NAME.fullmatch(str(self.device).lower()):
            raise ConfigError(f"device '{self.device}' is not a device", "use auto, cpu, cuda or cuda:N")
        if self.devices is not None and not all(DEVICE_NAME.fullmatch(d.strip()) for d in str(self.devices).lower().split(",")):
            raise ConfigError(f"devices '{self.devices}' is not a list of devices",
                              "use auto, cpu, cuda or a list such as cuda:0,cuda:1")
        from AutoSegCore.strategies.registry import known_strategy

        self.strategy = known_strategy(self.strategy)     # the registry's check (StrategyError: a ConfigError)
        self.holdout = [self.holdout] if isinstance(self.holdout, str) else list(self.holdout or [])
        self.base_config = _checked_base_config(self.base_config)
        if self.study_name is None:
            self.study_name = Path(self.out).resolve().name or "autoseg"

    @property
    def work_dir(self) -> Path:
        return Path(self.out)

    def storage_url(self) -> str:
        from AutoSegCore.search.storage import default_storage_url

        return self.storage or default_storage_url(self.out)

    def threads_per_job(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.jobs)

    def to_dict(self) -> dict:
        """What ``search.json`` and the study's ``settings`` attribute hold: the storage URL without its password."""
        from AutoSegCore.utils.storage_url import redact

        d = asdict(self)
        d["storage"] = redact(self.storage)
        d["data"] = str(Path(self.data).resolve()) if Path(self.data).exists() else self.data
        d["out"] = str(Path(self.out).resolve())
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSettings":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
