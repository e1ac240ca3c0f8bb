"""The layout of a search's work folder (``autoseg search --out DIR``), spelled in this one module.

The engine writes it, the report reads it, and the Slicer module and the web page open it, so the names live
here and nowhere else (a test greps the sources for them).  Standard library only: the front ends import it
without torch or Optuna.

    DIR/search.json        the settings and the study's name and storage (never its password)
    DIR/study.db           the Optuna study, unless --storage names another database
    DIR/plan.json          the dataset's plan; DIR/forecast.json the cost forecast and what it fitted
    DIR/fingerprint.json   the training cases' fingerprint (DIR/fingerprints/<key>.json for other case lists)
    DIR/proxy.json         the proxy-data selection, when the search uses one
    DIR/cache/, DIR/preprocessing/   stage outputs shared by the trials
    DIR/trials/0007/       one trial: spec.json, result.json, log.txt, its checkpoint
    DIR/final/<tag>/       the final trainings; DIR/final/final.json what they measured
    DIR/best/              the model to use (a model folder or an ensemble folder)
    DIR/predictions/       validation cases predicted by best/
    DIR/summary.json       the run's summary: written when the run ends, completed by the report
    DIR/report.html        the report
"""
from __future__ import annotations

from pathlib import Path

SETTINGS_FILE = "search.json"
STUDY_DB = "study.db"
PLAN_FILE = "plan.json"
FORECAST_FILE = "forecast.json"
FINGERPRINT_FILE = "fingerprint.json"
PROXY_FILE = "proxy.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
FINAL_RECORD = "final.json"
_FINAL_RECORD_BEFORE = "summary.json"       # final/summary.json: what searches before 2026-12-07 wrote


class SearchDir:
    """Paths in one search work folder; nothing is created here (``final_record`` looks which name exists)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"SearchDir({str(self.root)!r})"

    @property
    def settings(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def study_db(self) -> Path:
        return self.root / STUDY_DB

    @property
    def plan(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def forecast(self) -> Path:
        return self.root / FORECAST_FILE

    @property
    def fingerprint(self) -> Path:
        return self.root / FINGERPRINT_FILE

    def fingerprint_of(self, key: str) -> Path:
        """The fingerprint of another list of cases (a final training on more cases than the search's)."""
        return self.root / "fingerprints" / f"{key}.json"

    @property
    def proxy(self) -> Path:
        return self.root / PROXY_FILE

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def preprocessing(self) -> Path:
        return self.root / "preprocessing"

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    def trial(self, number: int) -> Path:
        return self.trials / f"{int(number):04d}"

    def final(self, tag: str | None = None) -> Path:
        return self.root / "final" if tag is None else self.root / "final" / tag

    @property
    def final_plan(self) -> Path:
        """The plan the final training's planned recipe was re-made with, for the time it was given."""
        return self.final(PLAN_FILE)

    @property
    def final_record(self) -> Path:
        """What the final training measured (members, ensemble validation, inference settings); the name an
        older search wrote when only that one exists, so its report still shows its final training."""
        path = self.final(FINAL_RECORD)
        before = self.final(_FINAL_RECORD_BEFORE)
        return before if not path.is_file() and before.is_file() else path

    @property
    def best(self) -> Path:
        return self.root / "best"

    def best_staging(self, what: str, token: str) -> Path:
        """A folder ``best/`` is built in (``tmp``) or moved to before it is replaced (``old``), named per process."""
        return self.root / f".best.{what}-{token}"

    def best_stagings(self) -> list[Path]:
        """Every staging folder present (``.best.tmp-…``, ``.best.old-…``, and the unsuffixed ones of old runs)."""
        return sorted(self.root.glob(".best.*"))

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE
