"""Stage outputs of a search, computed once and read by every trial and the final training (as nnU-Net does).

``fingerprint.json`` (the training cases' fingerprint: spacing, intensity statistics, …) is the only part that
reads every training case's voxels; each distinct preprocessing a trial asks for is fitted from it (arithmetic,
no reading) and written as ``preprocessing/<key>.json`` (the preprocessor state).  A trial gets both by path in
its :class:`~AutoSegCore.search.trial_spec.TrialSpec` and the preprocessed arrays from the shared ``cache/``, so
its start-up reads no case that another trial already read.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from AutoSegCore.search.search_dir import SearchDir
from AutoSegCore.utils.io import read_json, write_json



def _matches(path: Path, cases: list[str]) -> dict | None:
    from AutoSegCore.data.fingerprint import FINGERPRINT_VERSION

    try:
        saved = read_json(path)
    except (OSError, ValueError):
        return None
    if isinstance(saved, dict) and saved.get("version") == FINGERPRINT_VERSION \
            and [c.get("name") for c in saved.get("cases", [])] == list(cases):
        return saved
    return None


def stage_fingerprint(ds, cases: list[str], work: str | Path) -> tuple[dict, Path]:
    """The fingerprint of ``cases`` of ``ds`` and its file: ``work/fingerprint.json`` (the search's training cases,
    written by the first call), or ``work/fingerprints/<key>.json`` for another case list (a final training on
    more cases).  Read when a file already holds exactly these cases (a resumed search, the final training on the
    search's cases), else computed, reading each case once."""
    from AutoSegCore.data.fingerprint import compute_fingerprint, save_fingerprint

    folder = SearchDir(work)
    main = folder.fingerprint
    key = hashlib.sha1(json.dumps(list(cases)).encode()).hexdigest()[:16]
    for path in (main, folder.fingerprint_of(key)):
        saved = _matches(path, cases) if path.is_file() else None
        if saved is not None:
            return saved, path
    path = main if not main.is_file() else folder.fingerprint_of(key)
    fp = compute_fingerprint(ds.subset(cases))
    save_fingerprint(fp, path)
    return fp, path


def stage_plan(fingerprint: dict, work: str | Path, *, device: str, budget: float | None, events=None,
               saved: dict | None = None) -> dict:
    """The search's plan (``AutoSegCore.planning``) as ``work/plan.json``: ``saved`` (the study's own, for a
    resumed run or a joining worker), else the file a first run wrote, else made from the fingerprint now (on a
    CPU: a few timed steps)."""
    from AutoSegCore.planning import load_plan, plan_dataset, save_plan

    path = SearchDir(work).plan
    plan = saved or (load_plan(path) if path.is_file() else None)
    if plan is None:
        plan = plan_dataset(fingerprint=fingerprint, device=device, budget=budget)
        if events is not None:
            events.emit("plan", plan=plan, path=str(path))
    if not path.is_file():
        save_plan(plan, path)
    return plan


def fitted_preprocessor(config: dict, ds, cases: list[str], fingerprint: dict):
    """The preprocessor ``train_model`` would fit on ``cases`` for ``config``, fitted from their fingerprint."""
    from AutoSegCore.config import make_config
    from AutoSegCore.data.preprocess import Preprocessor

    return Preprocessor(make_config(config)["preprocessing"]).fit(ds.subset(cases), fingerprint=fingerprint)


def preprocessor_file(config: dict, ds, cases: list[str], fingerprint: dict, folder: str | Path) -> Path:
    """``folder/<key>.json``: the fitted preprocessor state for ``config`` (written once per distinct state)."""
    state = fitted_preprocessor(config, ds, cases, fingerprint).state()
    text = json.dumps(state, sort_keys=True)
    path = Path(folder) / f"{hashlib.sha1(text.encode()).hexdigest()[:16]}.json"
    if not path.is_file():
        write_json(path, state)
    return path


def preprocess_cache(config: dict, ds, cases: list[str], fingerprint: dict, cache_dir: str | Path | None):
    """A ``PreprocessCache`` for ``train_model(cache=...)``: fitted from the fingerprint, arrays in ``cache_dir``."""
    from AutoSegCore.data.preprocess import PreprocessCache

    return PreprocessCache(fitted_preprocessor(config, ds, cases, fingerprint), cache_dir)
