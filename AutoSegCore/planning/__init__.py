"""The planner: a dataset's fingerprint → its plan (spacing, network shape, patch, batch, epochs, normalisation),
written as ``plan.json`` and read by training, search and the front ends.  ``rules`` holds the torch-free rules,
``cost`` what a patch costs on the device, ``planner`` the plan itself."""
from __future__ import annotations

from AutoSegCore.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "planner": ("plan_dataset", "planned_config", "save_plan", "load_plan", "PLAN_FILE", "topology_for_depth"),
})
