"""The Slicer module's Qt-free logic (AutoSegSearchLib), one copy of the logic for both front ends.

The browser front end drives exactly the same Logic, EngineProcess, RunProgress and PlanForecast as the desktop
module.
AutoSegSearchLib is an installed package (the wheel and ``pip install -e .`` carry it; its source stays in
AutoSegSearch/, where Slicer loads the module from), so nothing here edits ``sys.path``.
"""
from __future__ import annotations

from AutoSegSearchLib.logic import TTA_CHOICES, PanelLogic, engine_choices
from AutoSegSearchLib.plan_forecast import PlanForecast, PlanForecastResult
from AutoSegSearchLib.process import EngineProcess, ProcessState
from AutoSegSearchLib.progress import RunProgress

__all__ = ["PanelLogic", "EngineProcess", "PlanForecast", "PlanForecastResult", "ProcessState", "RunProgress",
           "TTA_CHOICES", "engine_choices"]
