"""Everything that defines a search, stored as ``search.json`` and as study user attributes so that a
re-run resumes and a worker on another machine joins with the same definition."""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from AutoSegCore.errors import ConfigError


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
    data: str
    out: str
    space: str = "unet-pipeline"
    strategy: str = "bohb"
    proxy_data: str = "full"
    proxy_net: str = "full"
    trials: int | None = 20
    time_limit: float | None = None          # seconds for the search phase (hard: running trials stopped, re-queued)
    jobs: int = 1
    storage: str | None = None
    study_name: str | None = None
    epochs: int = 20                          # maximum budget per trial (epochs are the fidelity unit)
    min_epochs: int = 2                       # BOHB/Hyperband minimum budget
    steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "auto"
    trial_timeout: float | None = None        # seconds; a trial past it is killed and recorded as failed
    trial_memory_gb: float | None = None      # address-space limit per trial process (Linux)
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

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"--jobs {self.jobs} must be ≥ 1", "e.g. --jobs 2")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"--trials {self.trials} must be ≥ 1", "e.g. --trials 20")
        if self.epochs < 1 or self.min_epochs < 1 or self.min_epochs > self.epochs:
            raise ConfigError(f"epochs {self.min_epochs}..{self.epochs} are not a valid budget range",
                              "use 1 ≤ --min-epochs ≤ --epochs")
        if self.final_epochs is not None and self.final_epochs < 1:
            raise ConfigError(f"--final-epochs {self.final_epochs} must be ≥ 1", "e.g. --final-epochs 50")
        if self.final_time is not None and not self.final_time > 0:
            raise ConfigError(f"--final-time {self.final_time:g} s must be positive", "e.g. --final-time 80m")
        if self.final_tta not in ("auto", "on", "off"):
            raise ConfigError(f"--final-tta {self.final_tta!r} is not auto, on or off", "e.g. --final-tta auto")
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
        d = asdict(self)
        d["data"] = str(Path(self.data).resolve()) if Path(self.data).exists() else self.data
        d["out"] = str(Path(self.out).resolve())
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSettings":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
