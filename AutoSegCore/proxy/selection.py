"""Proxy-data selection (the proxy paper, §3): rank cases by their mean pairwise similarity and keep the least redundant.

Each case's score is the mean of its measure (MI or local NCC) against every *other* case; the cases with the
LOWEST scores — the ones that share the least with the rest — are chosen within a budget (a count, or a
fraction of the dataset).  ``method="random"`` is the seeded baseline the paper compares against.  The chosen
cases are split at random (seeded) into train/validation, 50/50 as in the paper by default.

Why the self-pair is left out of the mean: the paper lists (x1, x1) among x1's pairs, but MI(x, x) is x's
entropy and NCC(x, x) is ~1 for every case, so including it only adds a per-case constant (for MI one that
ranks by intensity entropy) — ``include_self=True`` restores the paper's literal form.

The pairwise matrix is cached on disk per dataset content (sha256 of the case files) and parameters, so a
second selection with another budget, seed or split costs nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from AutoSegCore.errors import ConfigError, DatasetError
from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.proxy import similarity as sim
from AutoSegCore.proxy.fidelity import SELECTION_METHODS
from AutoSegCore.search.search_dir import PROXY_FILE       # the selection's file, alone or in a search folder
from AutoSegCore.utils.device import pick_device
from AutoSegCore.utils.io import atomic_path, write_json

CACHE_VERSION = 1


@dataclass
class ProxySelection:
    """The outcome of a proxy-data selection; ``to_json()`` is what ``proxy.json`` holds."""
    method: str
    roi: str
    budget: int
    budget_spec: int | float
    seed: int
    size: int
    val_fraction: float
    cases: list[str]
    scores: dict[str, float | None]
    ranks: dict[str, int | None]
    selected: list[str]
    train: list[str]
    val: list[str]
    dataset: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    cache_hit: bool = False

    def to_json(self) -> dict:
        data = asdict(self)
        data["cases"] = [{"name": n, "score": self.scores.get(n), "rank": self.ranks.get(n),
                          "selected": n in self.selected} for n in self.cases]
        del data["scores"], data["ranks"]
        data["format"] = "autoseg-proxy/1"
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ProxySelection":
        data = dict(data)
        data.pop("format", None)
        rows = data.pop("cases")
        return cls(cases=[r["name"] for r in rows], scores={r["name"]: r["score"] for r in rows},
                   ranks={r["name"]: r["rank"] for r in rows}, **data)


def save_proxy(selection: ProxySelection, path: str | Path) -> Path:
    """Write ``proxy.json`` atomically (a file path, or a folder to put ``proxy.json`` in)."""
    p = Path(path)
    if p.suffix.lower() != ".json":
        p = p / PROXY_FILE
    return write_json(p, selection.to_json())


def load_proxy(path: str | Path) -> ProxySelection:
    """Read a ``proxy.json`` written by ``save_proxy``."""
    p = Path(path)
    if p.is_dir():
        p = p / PROXY_FILE
    try:
        return ProxySelection.from_json(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{p}: not a readable proxy.json ({exc.__class__.__name__})",
                          "re-create it with `autoseg proxy DATA --out DIR`") from None


# ----------------------------------------------------------------------------------------------- budget + split

def resolve_budget(budget: int | float | str, n_cases: int) -> int:
    """A count (int ≥ 2) or a fraction (0 < float ≤ 1) of ``n_cases`` → a count in 2..n_cases, else ConfigError."""
    asked = budget                  # the budget as given, for the messages
    if isinstance(budget, str):
        text = budget.strip()
        try:
            budget = int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            raise ConfigError(f"budget = {asked!r} is not a number",
                              "give a count of cases (e.g. 10) or a fraction of the dataset (e.g. 0.25)") from None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise ConfigError(f"budget = {asked!r} is not a number",
                          "give a count of cases (e.g. 10) or a fraction of the dataset (e.g. 0.25)")
    if isinstance(budget, float):
        if not 0 < budget <= 1:
            raise ConfigError(f"budget fraction {asked!r} must be in (0, 1]",
                              "give a fraction such as 0.25, or a whole number of cases such as 10")
        count = int(round(budget * n_cases))
    else:
        count = budget
    if count < 2:
        raise ConfigError(f"budget {asked!r} gives {count} case(s) of {n_cases}; at least 2 are needed "
                          "(one to train on, one to validate)", "raise the budget to 2 or more cases")
    if count > n_cases:
        raise ConfigError(f"budget {asked!r} asks for {count} cases but the dataset has only {n_cases}",
                          f"use a budget of at most {n_cases} cases (or a fraction ≤ 1)")
    return count


def split_train_val(selected: list[str], val_fraction: float = 0.5, seed: int = 0) -> tuple[list[str], list[str]]:
    """Seeded random split of the selection; both parts get at least one case."""
    if not (isinstance(val_fraction, (int, float)) and 0 < val_fraction < 1):
        raise ConfigError(f"val_fraction = {val_fraction!r} must be between 0 and 1 (exclusive)",
                          "e.g. 0.5 (the proxy paper's 50/50 split)")
    n = len(selected)
    n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val = sorted(selected[k] for k in order[:n_val])
    train = sorted(selected[k] for k in order[n_val:])
    return train, val


def case_scores(matrix: np.ndarray, include_self: bool = False) -> np.ndarray:
    """Mean pairwise measure of each case against the others (or all, with ``include_self``)."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    if include_self:
        return m.mean(1)
    return (m.sum(1) - np.diag(m)) / max(n - 1, 1)


def rank_lowest(names: list[str], scores: np.ndarray) -> list[str]:
    """Names ordered by ascending score (ties by name), i.e. rank 1 first."""
    return [names[k] for k in sorted(range(len(names)), key=lambda k: (scores[k], names[k]))]


# ----------------------------------------------------------------------------------------------- cache

def dataset_digest(dataset) -> str:
    """sha256 over the case names and the bytes of every image and label file (the cache's content key)."""
    h = hashlib.sha256()
    for case in dataset.cases:
        h.update(case.name.encode())
        for p in list(case.images) + ([case.label] if case.label is not None else []):
            h.update(b"\0")
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    import os
    root = os.environ.get("AUTOSEG_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / ("proxy" if os.environ.get("AUTOSEG_CACHE") else "autoseg/proxy")


def _cache_file(cache_dir: Path, digest: str, params: dict) -> Path:
    key = hashlib.sha256(json.dumps({"data": digest, "v": CACHE_VERSION, **params}, sort_keys=True).encode())
    return cache_dir / f"pairwise-{params['method']}-{params['roi']}-{key.hexdigest()[:20]}.npy"


def _read_cache(path: Path, n: int) -> np.ndarray | None:
    try:
        m = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return m if m.shape == (n, n) and np.isfinite(m).all() else None


def _write_cache(path: Path, matrix: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, matrix, allow_pickle=False)
    except OSError:
        pass   # a read-only or full cache dir only costs a recomputation next time


# ----------------------------------------------------------------------------------------------- main entry

def load_volumes(dataset, *, roi: str = "label", size: int = sim.DEFAULT_SIZE, margin: int = sim.DEFAULT_MARGIN,
                 progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Read every case and bring it to a (C, size, size, size) cube; returns (N, C, size, size, size).

    Cases are read in parallel threads (decompression and resampling release the GIL) and kept in order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from AutoSegCore.data.dataset import read_case

    cases = list(dataset.cases)
    n = len(cases)

    def one(case) -> torch.Tensor:
        arrays = read_case(case)
        return sim.prepare_volume(arrays.image, arrays.label, roi=roi, size=size, margin=margin, name=case.name)

    out = None
    workers = max(1, min(torch.get_num_threads(), 8))
    with ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        for k, cube in enumerate(pool.map(one, cases)):
            if out is None:
                out = torch.from_numpy(sim.new_array((n,) + tuple(cube.shape)))
            elif cube.shape[0] != out.shape[1]:
                raise DatasetError(f"{cases[k].name}: image has {cube.shape[0]} channel(s), the first case "
                                   f"{out.shape[1]}", "give every case the same channels")
            out[k] = cube
            if progress is not None:
                progress(k + 1, n)
    return out


def _open_dataset(dataset):
    from AutoSegCore.data.dataset import Dataset, load_dataset

    if isinstance(dataset, Dataset):
        return dataset
    return load_dataset(dataset, deep=False)


def pairwise_matrix(dataset, method: str = "mi", *, roi: str = "label", size: int = sim.DEFAULT_SIZE,
                    margin: int = sim.DEFAULT_MARGIN, bins: int = sim.DEFAULT_BINS, window: int = sim.DEFAULT_WINDOW,
                    cache_dir: str | Path | None = None, device: str = "auto",
                    events: EventWriter = NULL_EVENTS, show_progress: bool = False) -> tuple[np.ndarray, bool]:
    """(N, N) MI or NCC matrix of a dataset's cases, from the on-disk cache when present; returns (matrix, hit)."""
    if method not in sim.MEASURES:
        raise ConfigError(f"method = {method!r} is not a similarity measure", "use 'mi' or 'ncc'")
    sim.check_roi(roi)
    if not (isinstance(size, int) and size >= 8):
        raise ConfigError(f"size = {size!r} must be an integer ≥ 8", "e.g. size=64")
    ds = _open_dataset(dataset)
    params = {"method": method, "roi": roi, "size": size, "margin": margin,
              **({"bins": bins} if method == "mi" else {"window": window})}
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_path = _cache_file(cache, dataset_digest(ds), params)
    matrix = _read_cache(cache_path, len(ds.cases)) if cache_path.exists() else None
    if matrix is not None:
        return matrix, True
    dev = pick_device(device)
    with _Progress(show_progress, events) as bar:
        volumes = load_volumes(ds, roi=roi, size=size, margin=margin, progress=bar.callback("load", "reading cases"))
        matrix = sim.pairwise_similarity(volumes, method, bins=bins, window=window, device=dev,
                                         progress=bar.callback(method, f"pairwise {method.upper()}"))
    _write_cache(cache_path, matrix)
    return matrix, False


def select_proxy_data(dataset, method: str = "mi", roi: str = "label", budget: int | float | str = 10,
                      seed: int = 0, size: int = sim.DEFAULT_SIZE, val_fraction: float = 0.5,
                      cache_dir: str | Path | None = None, device: str = "auto", *,
                      margin: int = sim.DEFAULT_MARGIN, bins: int = sim.DEFAULT_BINS,
                      window: int = sim.DEFAULT_WINDOW, include_self: bool = False,
                      events: EventWriter = NULL_EVENTS, show_progress: bool = False) -> ProxySelection:
    """Choose the ``budget`` least redundant cases of ``dataset`` (folder, pairs or Dataset) by MI, NCC or at random."""
    if method not in SELECTION_METHODS:
        raise ConfigError(f"method = {method!r} is not one of {list(SELECTION_METHODS)}",
                          "use mi (mutual information), ncc (local cross-correlation) or random")
    sim.check_roi(roi)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed = {seed!r} must be an integer", "e.g. seed=0")
    start = time.perf_counter()
    ds = _open_dataset(dataset)
    names = [c.name for c in ds.cases]
    count = resolve_budget(budget, len(names))
    split_train_val(names[:2], val_fraction, seed)          # validates val_fraction before any heavy work
    hit = False
    if method == "random":
        picked = np.random.default_rng(seed).choice(len(names), size=count, replace=False)
        selected = sorted(names[k] for k in picked)
        scores: dict[str, float | None] = {n: None for n in names}
        ranks: dict[str, int | None] = {n: None for n in names}
        params: dict[str, Any] = {}
    else:
        matrix, hit = pairwise_matrix(ds, method, roi=roi, size=size, margin=margin, bins=bins, window=window,
                                      cache_dir=cache_dir, device=device, events=events,
                                      show_progress=show_progress)
        values = case_scores(matrix, include_self)
        order = rank_lowest(names, values)
        ranks = {n: k + 1 for k, n in enumerate(order)}
        scores = {n: float(v) for n, v in zip(names, values)}
        selected = order[:count]
        params = {"margin": margin, "include_self": include_self,
                  **({"bins": bins} if method == "mi" else {"window": window})}
    train, val = split_train_val(selected, val_fraction, seed)
    root = getattr(ds, "root", None)
    return ProxySelection(method=method, roi=roi, budget=count, budget_spec=_budget_as_asked(budget), seed=seed,
                          size=size, val_fraction=float(val_fraction), cases=names, scores=scores, ranks=ranks,
                          selected=selected, train=train, val=val, dataset=str(root) if root else ds.name,
                          params=params, seconds=round(time.perf_counter() - start, 3), cache_hit=hit)


def _budget_as_asked(budget) -> int | float:
    """The budget as the user gave it, as a number (proxy.json's ``budget_spec``)."""
    if isinstance(budget, str):
        text = budget.strip()
        return int(text) if text.isdigit() else float(text)
    return budget


class _Progress:
    """A rich progress bar (when asked) plus throttled ``progress`` events for the pairwise computation."""

    def __init__(self, show: bool, events: EventWriter) -> None:
        self.events = events
        self.bar = None
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            import sys
            from rich.console import Console
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(file=sys.stderr), transient=False)

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def callback(self, stage: str, description: str) -> Callable[[int, int], None]:
        task = self.bar.add_task(description, total=None) if self.bar is not None else None
        last = [0.0]

        def update(done: int, total: int) -> None:
            if task is not None:
                self.bar.update(task, completed=done, total=total)
            now = time.monotonic()
            if done == total or now - last[0] >= 0.5:
                last[0] = now
                self.events.emit("progress", stage=stage, done=done, total=total)
        return update
