"""A Slicer "application" without Qt: scene + application logic + the module logics the Logic needs.

For tests, scripts and the screenshot renderer under the ``slicer-core`` wheel (no ``slicer.app`` there).
Adapted from the checked recipe in ../shared/docs/slicer-headless.md; the desktop app does all of this itself.
"""
from __future__ import annotations

import types

import slicer


def make_headless_app(set_globals: bool = True):
    """Return ``(scene, app_logic)``; with ``set_globals`` also set ``slicer.mrmlScene`` and a ``slicer.modules``
    shim, because ``slicer.util`` helpers look module logics up there."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = app_logic.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app_logic.SetModuleLogic("Colors", colors)   # the Volumes logic looks it up by this name
    logics = {}
    for key, name, cls in (("volumes", "Volumes", slicer.vtkSlicerVolumesLogic),
                           ("segmentations", "Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                           ("subjecthierarchy", "SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
        logic = cls()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(name, logic)
        logics[key] = logic
    app_logic._autoseg_logics = logics            # keep the Python wrappers (and so the logics) alive
    if set_globals:
        slicer.mrmlScene = scene
        slicer.modules = types.SimpleNamespace(
            **{k: types.SimpleNamespace(logic=(lambda lg=lg: lg)) for k, lg in logics.items()})
    return scene, app_logic


def close_headless_app(scene, app_logic) -> None:
    """Clear the scene and drop the logics (call at the end of a test)."""
    scene.Clear(True)
    for logic in getattr(app_logic, "_autoseg_logics", {}).values():
        logic.SetMRMLScene(None)
