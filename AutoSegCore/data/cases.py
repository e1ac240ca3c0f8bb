"""What a dataset is: its cases (image file(s) + label file) and what ``dataset.json`` says about them.

Plain records with no reading or checking, so that the modules that read (``volumes``), check (``validation``) and
find (``dataset``) cases all import them from below and none imports another's caller.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from AutoSegCore.errors import DatasetError


@dataclass
class Case:
    """One training example: its image file(s) and label file (``None`` for unlabelled images)."""
    name: str
    images: list[Path]
    label: Path | None
    # a .seg.nrrd label: segment name -> the dataset's label value (so every case maps names the same way)
    segment_values: dict[str, int] | None = None


@dataclass
class Dataset:
    """The cases of a dataset plus what ``dataset.json`` says about them (label names, channel names)."""
    root: Path | None
    name: str
    labels: dict[int, str]
    channel_names: list[str]
    cases: list[Case]
    modality: str
    source: str = "folder"          # "msd" | "nnunet" | "pairs": which layout the cases came from
    warnings: list[str] = field(default_factory=list)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def foreground_labels(self) -> list[int]:
        return sorted(v for v in self.labels if v != 0)

    @property
    def case_names(self) -> list[str]:
        return [c.name for c in self.cases]

    def case(self, name: str) -> Case:
        for c in self.cases:
            if c.name == name:
                return c
        raise DatasetError(f"dataset '{self.name}' has no case '{name}'",
                           f"use one of: {', '.join(self.case_names[:5])}{' ...' if len(self.cases) > 5 else ''}")

    def subset(self, names: Iterable[str]) -> "Dataset":
        return replace(self, cases=[self.case(n) for n in names], warnings=list(self.warnings))
