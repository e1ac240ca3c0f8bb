"""Reading what the engine wrote: proxy.json, summary.json, an MSD folder's dataset.json and case files.

Plain files only (no MRML), each parse error turned into a DatasetError that names the file and the fix.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DatasetError
from .nodes import case_name_from_file


@dataclass
class ProxyCase:
    name: str
    score: float | None
    rank: int | None
    selected: bool



@dataclass
class ProxyResult:
    method: str
    roi: str
    budget: object
    cases: list[ProxyCase]
    selected: list[str]
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    preview_png: Path | None = None



def search_dir(out_dir: str | Path):
    """The engine's layout of a search work folder (``AutoSegCore.search.search_dir.SearchDir``)."""
    from AutoSegCore.search.search_dir import SearchDir  # noqa: PLC0415 - the engine is installed before a search

    return SearchDir(out_dir)


class EngineOutputs:
    """Parsers of the engine's output files: the panel logic's ``outputs``, one object for every front end."""

    search_dir = staticmethod(search_dir)

    def read_proxy_result(self, out_dir: str | Path) -> ProxyResult:
        """Parse ``proxy.json`` written by ``autoseg proxy``; cases sorted by rank."""
        from AutoSegCore.search.search_dir import PROXY_FILE  # noqa: PLC0415 - autoseg proxy's file, as a search's

        path = Path(out_dir) / PROXY_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{path} not found", "run the proxy selection first") from None
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc.msg})", "run the proxy selection again") from None
        cases = [ProxyCase(str(c.get("name")), c.get("score"), c.get("rank"), bool(c.get("selected")))
                 for c in data.get("cases", [])]
        cases.sort(key=lambda c: (c.rank is None, c.rank if c.rank is not None else 0, c.name))
        preview = Path(out_dir) / "proxy_preview.png"
        return ProxyResult(data.get("method", ""), data.get("roi", ""), data.get("budget"), cases,
                           list(data.get("selected", [])), list(data.get("train", [])), list(data.get("val", [])),
                           preview if preview.exists() else None)

    def read_search_summary(self, out_dir: str | Path) -> dict:
        """``summary.json`` of a finished search (best value, parameters, per-class Dice, counts; written when
        the run ends, with or without a report), or {} while it does not exist."""
        path = search_dir(out_dir).summary
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}

    @staticmethod
    def best_of(summary: dict) -> tuple[float | None, dict]:
        """(best objective value, its parameters) from ``summary.json`` or the search's ``done`` event."""
        best = summary.get("best") or {}
        return best.get("value"), dict(best.get("params") or {})

    def read_dataset_json(self, dataset_dir: str | Path) -> dict:
        path = Path(dataset_dir) / "dataset.json"
        if not path.exists():
            raise DatasetError(f"{path} not found", "choose a dataset folder in MSD layout (with dataset.json)")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not valid JSON ({exc.msg})", "fix or re-export the dataset") from None

    def dataset_label_names(self, dataset_dir: str | Path) -> dict[int, str]:
        labels = self.read_dataset_json(dataset_dir).get("labels", {})
        out = {}
        for key, value in labels.items():
            # MSD: {"1": "name"}; nnU-Net v2: {"name": 1}
            if str(key).lstrip("-").isdigit():
                out[int(key)] = str(value)
            elif isinstance(value, int):
                out[value] = str(key)
        out.pop(0, None)
        return dict(sorted(out.items()))

    def dataset_files(self, dataset_dir: str | Path, case: str) -> tuple[Path, Path | None]:
        """(image, label) files of one case of an MSD/nnU-Net folder, found through dataset.json or by name."""
        root = Path(dataset_dir)
        meta = self.read_dataset_json(root)
        for entry in meta.get("training", []):
            image = root / entry["image"] if isinstance(entry, dict) else None
            if image is not None and case_name_from_file(image) == case:
                return image, root / entry["label"]
        for suffix in (".nii.gz", "_0000.nii.gz", ".nii", ".nrrd"):
            image = root / "imagesTr" / f"{case}{suffix}"
            if image.exists():
                label = root / "labelsTr" / f"{case}{suffix.replace('_0000', '')}"
                return image, label if label.exists() else None
        raise DatasetError(f"case '{case}' not found in {root}", "pick a case listed in the proxy table")
