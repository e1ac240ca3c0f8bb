"""The AutoSegSearch module's logic: scene <-> dataset folder <-> engine <-> scene, one object for the front ends.

Qt-free on purpose: it uses only MRML classes, storage nodes, static module-logic methods, numpy and the engine's
file formats, so it runs unchanged in the desktop Slicer, headless under the ``slicer-core`` wheel (tests) and in
the browser front end (trame-slicer).  No ``slicer.app``, no ``slicer.util`` I/O helpers (they need Qt), no
parameter-node wrapper (that lives in the Widget).  Every method that could fail on user input checks everything
first and only then touches the scene, so a bad input raises :class:`DatasetError` and changes nothing.

The parts live one concept per module (nodes, dataset_export, scene_import, engine_commands, engine_outputs);
:class:`PanelLogic` holds one of each, and this module re-exports the names the front ends import.
"""
from __future__ import annotations

import slicer

from .dataset_export import CasePair, DatasetExport, ExportedDataset
from .engine_commands import TTA_CHOICES, EngineCommands, engine_choices
from .engine_outputs import EngineOutputs, ProxyCase, ProxyResult
from .errors import ConfigError, DatasetError
from .nodes import PALETTE, SceneNodes, case_name_from_file, safe_case_name
from .scene_import import SceneImport

__all__ = ["PanelLogic", "CasePair", "ConfigError", "DatasetError", "ExportedDataset", "PALETTE",
           "ProxyCase", "ProxyResult", "TTA_CHOICES", "case_name_from_file", "engine_choices", "safe_case_name"]


class PanelLogic:
    """Everything the module does that is not a widget, one part per concept. Pass plain values and nodes in; get
    nodes and paths out.

    ``nodes`` (node I/O on the scene), ``exporter`` (scene -> MSD dataset folder), ``importer`` (cases and
    predicted masks -> scene), ``engine`` (command lines and child processes), ``outputs`` (the engine's files).
    ``scene`` defaults to ``slicer.mrmlScene``; ``app_logic`` (optional) lets ``importer.show_in_views`` put a
    loaded case in the slice views; ``volumes_logic`` (optional) loads volumes the way the app does (window/level,
    colour); ``python``: the engine's interpreter (None: found as :func:`.process.engine_python` says).
    """

    def __init__(self, scene=None, app_logic=None, volumes_logic=None, python: str | None = None) -> None:
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.app_logic = app_logic
        if volumes_logic is None and app_logic is not None:
            volumes_logic = app_logic.GetModuleLogic("Volumes")
        self.nodes = SceneNodes(self.scene, volumes_logic)
        self.engine = EngineCommands(python)
        self.outputs = EngineOutputs()
        self.exporter = DatasetExport(self.nodes)
        self.importer = SceneImport(self.nodes, self.engine, self.outputs, app_logic)
