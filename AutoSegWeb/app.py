"""The browser front end's controller: page state + actions over the Slicer module's Logic and the engine.

Same panels and the same flow as the desktop module (Data → Proxy data → Search → Run → Results/Apply), driven by
the very same ``PanelLogic``, ``EngineProcess`` and ``RunProgress``. The engine runs as a child process;
an asyncio task polls it (never blocks the server), so callbacks touch MRML in the server's one thread.
Every path the page sends is confined to the --data / --work folders (:mod:`AutoSegWeb.paths`), every choice is
checked against the server's own lists (:mod:`AutoSegWeb.checks`), and one browser session owns the page and the
runs it starts (:mod:`AutoSegWeb.guard`).
"""
from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from pathlib import Path

import numpy as np
from trame.app import TrameApp
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories

from AutoSegCore.errors import AutoSegError, DatasetError
from AutoSegWeb.actions import user_action
from AutoSegSearchLib.run_parameters import choice, parse_proxy
from AutoSegWeb import checks
from AutoSegWeb.forecast import PlanForecastPanel
from AutoSegWeb.paths import ConfinedRoot
from AutoSegWeb.slicer_lib import TTA_CHOICES, PanelLogic, EngineProcess, ProcessState, RunProgress
from AutoSegWeb.ui import build_ui

log = logging.getLogger("AutoSegWeb")
POLL_SECONDS = 0.4
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class AutoSegWebApp(TrameApp):
    """One page = one Slicer scene. Keep a reference to this object while the server runs (trame-slicer pitfall:
    a freed SlicerApp leaves the views without colour tables)."""

    def __init__(self, data_dir: str | Path, work_dir: str | Path, server=None, guard=None) -> None:
        super().__init__(server)
        self.guard = guard                  # AutoSegWeb.guard.PageGuard (None: no session rules, e.g. embedded)
        self.data_root = ConfinedRoot(data_dir, "data")
        self.work_root = ConfinedRoot(work_dir, "work")
        self.server.enable_module(trame_slicer_module)
        self.server.serve["results"] = str(self.work_root.root)   # report.html links (work folder only)

        self.slicer = SlicerApp()
        # PNG frames: exact colours in the views (the test checks segment colours in a screenshot)
        register_rca_factories(self.slicer.view_manager, self.server, rca_encoder="png")
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layout_manager.set_layout("Axial Primary")
        self.logic = PanelLogic(self.slicer.scene, app_logic=self.slicer.app_logic)
        # the engine's own lists (AutoSegCore.choices.engine_choices): the page keeps no copies; values a client
        # sends are checked against this server-side copy, never against the (client-writable) state
        self.choices = self.logic.engine.engine_choices()

        self.dataset_dir: Path | None = None
        self.cases: list[str] = []          # the chosen dataset's cases (the state's case_names is a client's copy)
        self.results_dir: Path | None = None
        self.proc: EngineProcess | None = None
        self.run_session: str | None = None
        self.progress = RunProgress()
        self._on_done = None
        self._shown_nodes: list = []
        self.engines_started = 0
        self._init_state()
        self.plan_panel = PlanForecastPanel(self)
        self.ui = build_ui(self.server, self.layout_manager, self)
        self.ctrl.on_server_ready.add(self._start_polling)
        if guard is not None:
            guard.on_new_owner = self.reset_page

    # ------------------------------------------------------------------------------------------------ state
    def _init_state(self) -> None:
        s = self.state
        s.trame__title = "AutoSegSearch"
        s.error, s.notice = "", ""
        s.data_root, s.work_root = str(self.data_root.root), str(self.work_root.root)
        s.datasets = self.list_datasets()
        s.dataset_text = s.datasets[0] if s.datasets else ""
        s.dataset = None
        s.case_names = []
        s.proxy_method, s.proxy_roi, s.proxy_budget, s.proxy_unit = "mi", True, 30, "%"
        s.proxy_rows, s.proxy_preview = [], ""
        s.preview_case = ""
        choices = self.choices
        s.proxy_methods, s.proxy_nets = choices["proxy_methods"], choices["proxy_nets"]
        s.spaces, s.strategies = choices["spaces"], choices["strategies"]
        s.space = "proxy-hpo" if "proxy-hpo" in s.spaces else s.spaces[0]
        s.strategy = "random"
        s.proxy_net = "levels=3"
        s.trials, s.epochs, s.steps_per_epoch, s.final_epochs = 2, 1, 2, 1
        s.search_minutes = ""                    # empty: the search runs --trials
        s.final_minutes = ""                     # empty: the final training runs --final-epochs
        s.search_on_proxy = False
        s.run_name = ""
        s.busy, s.run_kind, s.run_progress, s.run_status, s.run_state = False, "", 0, "idle", ""
        s.trial_rows, s.run_log = [], ""
        s.best_value, s.best_params, s.best_dice, s.report_url, s.results_name = None, [], [], "", ""
        s.model_text = ""
        s.apply_case, s.segments, s.shown = "", [], ""
        s.tta_choices, s.apply_tta = list(TTA_CHOICES), next(iter(TTA_CHOICES))
        s.panels = ["data"]

    def list_datasets(self) -> list[str]:
        """Dataset folders (with dataset.json) directly under --data, or --data itself."""
        root = self.data_root.root
        if (root / "dataset.json").is_file():
            return ["."]
        found = []
        for child in sorted(root.iterdir()):
            try:
                ok = child.is_dir() and (child / "dataset.json").is_file() and self.data_root.resolve(child.name)
            except AutoSegError:        # a symlinked folder leading outside --data is not offered
                ok = False
            if ok:
                found.append(child.name)
        return found

    # ------------------------------------------------------------------------------------------------ Data
    @user_action
    def choose_dataset(self, text: str | None = None) -> None:
        """``text`` is the field's value sent with the click: the synced state can lag one edit behind it."""
        if text is not None:
            self.state.dataset_text = text
        text = self.state.dataset_text
        path = self.data_root.resolve(text, kind="dataset folder")
        if not path.is_dir():
            raise DatasetError(f"dataset folder '{text}' is a file, not a folder",
                               "choose a folder holding dataset.json, imagesTr/ and labelsTr/")
        meta = self.logic.outputs.read_dataset_json(path)
        names = self.logic.outputs.dataset_label_names(path)
        cases = self._case_names(path, meta)
        if not cases:
            raise DatasetError(f"{path / 'dataset.json'} lists no training cases", "check its 'training' list")
        self.dataset_dir, self.cases = path, cases
        modality = meta.get("modality", {})
        self.state.dataset = {
            "folder": self.data_root.relative(path), "name": str(meta.get("name", path.name)), "cases": len(cases),
            "labels": ", ".join(names.values()),
            "modality": ", ".join(map(str, modality.values())) if isinstance(modality, dict) else str(modality)}
        self.state.case_names = cases
        self.state.apply_case = cases[0]
        self.state.proxy_rows, self.state.proxy_preview, self.state.preview_case = [], "", ""
        self.state.run_name = f"{path.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.state.panels = ["data", "proxy"]

    def _case_names(self, path: Path, meta: dict) -> list[str]:
        from AutoSegSearchLib.logic import case_name_from_file  # noqa: PLC0415

        cases = [case_name_from_file(e["image"]) for e in meta.get("training", []) if isinstance(e, dict)]
        if not cases and (path / "imagesTr").is_dir():
            cases = sorted(case_name_from_file(p) for p in (path / "imagesTr").iterdir())
        return cases

    def require_dataset(self) -> Path:
        if self.dataset_dir is None:
            raise DatasetError("no dataset chosen", "choose a dataset folder in the Data panel first")
        return self.dataset_dir

    def require_idle(self) -> None:
        if self.proc is not None and self.proc.running:
            raise DatasetError(f"a {self.state.run_kind} run is still going", "wait for it or press Cancel")

    def run_dir(self, leaf: str) -> Path:
        name = str(self.state.run_name or "").strip()
        if not RUN_NAME.match(name):
            raise DatasetError(f"run name '{name}' is not a plain folder name",
                               "use letters, digits, '.', '_' or '-' (it becomes a folder inside the work folder)")
        return self.work_root.resolve(f"{name}/{leaf}" if leaf else name, must_exist=False, kind="output folder")

    # ------------------------------------------------------------------------------------------------ Proxy data
    @user_action
    def run_proxy(self) -> None:
        dataset = self.require_dataset()
        self.require_idle()
        out = self.run_dir("proxy")
        s = self.state
        method, budget = parse_proxy(self.choices, s.proxy_method, s.proxy_budget, s.proxy_unit)
        args = self.logic.engine.proxy_args(dataset, out, method=method, roi=bool(s.proxy_roi), budget=budget, preview=True,
                                     cache_dir=out / "cache")
        self.state.proxy_rows, self.state.proxy_preview = [], ""
        self._start("proxy", args, out, lambda: self._proxy_finished(out))

    def _proxy_finished(self, out: Path) -> None:
        result = self.logic.outputs.read_proxy_result(out)
        self.state.proxy_rows = [{"name": c.name, "score": "" if c.score is None else f"{c.score:.4g}",
                                  "rank": c.rank, "selected": c.selected} for c in result.cases]
        if result.preview_png is not None:
            self.state.proxy_preview = _data_url(result.preview_png)
        self.state.notice = f"proxy selection: {len(result.selected)} of {len(result.cases)} cases selected"

    @user_action
    def preview(self, case: str) -> None:
        dataset = self.require_dataset()
        if case not in self.cases:
            raise DatasetError(f"case '{case}' is not in the dataset", "pick a case from the proxy table")
        volume, segmentation = self._load_case(dataset, case)
        self._show(volume, segmentation)
        self.state.preview_case = case
        self.state.shown = f"{case}: image + reference labels"

    def _load_case(self, dataset: Path, case: str):
        for node in self._shown_nodes:          # one case at a time: keeps names (= prediction files) unique
            self.logic.nodes.remove_node(node)
        self._shown_nodes = []
        volume, segmentation = self.logic.importer.load_case(dataset, case)
        self._shown_nodes = [volume, segmentation]
        return volume, segmentation

    def _show(self, volume, segmentation) -> None:
        """Image in the slice views' background, segments over it (2D) and as surfaces (3D), views centred."""
        dm = self.slicer.display_manager
        dm.show_volume_in_slice_background(volume)
        dm.show_volume_in_slice_foreground(None)
        display = segmentation.GetDisplayNode()
        display.SetVisibility(True)
        display.SetOpacity2DFill(0.45)
        segmentation.CreateClosedSurfaceRepresentation()
        dm.reset_views()
        centre = _mask_centre(self.logic, segmentation, volume)
        if centre is not None:
            for view in self.slicer.view_manager.get_slice_views():
                view.get_view_node().JumpSliceByCentering(*centre)
        seg = segmentation.GetSegmentation()
        self.state.segments = [{"name": seg.GetNthSegment(i).GetName(),
                                "color": _hex(seg.GetNthSegment(i).GetColor())}
                               for i in range(seg.GetNumberOfSegments())]

    # ------------------------------------------------------------------------------------------------ Search / Run
    def search_parameters(self):
        """The Search panel, checked: Start and Plan & forecast run the same search."""
        return checks.search_parameters(self.state, self.choices)

    @user_action
    def start_search(self) -> None:
        dataset = self.require_dataset()
        self.require_idle()
        out = self.run_dir("search")
        args = self.search_parameters().search_args(dataset, out)
        self.plan_panel.stop()                     # the search forecasts again before its first trial
        s = self.state
        s.trial_rows, s.best_value, s.best_params, s.best_dice, s.report_url = [], None, [], [], ""
        s.panels = ["run"]
        self._start("search", args, out, lambda: self._search_finished(out))

    def _search_finished(self, out: Path) -> None:
        self._load_results(out)
        self.state.panels = ["results"]

    @user_action
    def open_results(self, text: str | None = None) -> None:
        """Results of an earlier search: a folder inside --work holding summary.json and best/. ``text`` is the
        field's value sent with the click (the synced state can lag one edit behind it)."""
        if text is not None:
            self.state.model_text = text
        self._load_results(self.work_root.resolve(self.state.model_text, kind="results folder"))

    def _load_results(self, out: Path) -> None:
        summary = self.logic.outputs.read_search_summary(out)
        model = self.logic.engine.resolve_model_dir(out)           # raises with a hint when there is no model
        value, params = self.logic.outputs.best_of(summary or (self.progress.done or {}))
        best = (summary or {}).get("best") or {}
        self.results_dir = out
        s = self.state
        s.best_value = None if value is None else round(float(value), 4)
        s.best_params = [{"name": k, "value": _fmt(v)} for k, v in sorted(params.items())]
        s.best_dice = [{"name": k, "value": _fmt(v)} for k, v in (best.get("val_dice_per_class") or {}).items()]
        report = self.logic.outputs.search_dir(out).report
        s.report_url = f"/results/{report.relative_to(self.work_root.root).as_posix()}" if report.exists() else ""
        s.results_name = self.work_root.relative(out)
        s.model_text = self.work_root.relative(model)

    @user_action
    def cancel(self) -> None:
        if self.proc is None or not self.proc.running:
            raise DatasetError("nothing is running", "start a proxy selection or a search first")
        if self.guard is not None and self.run_session != self.guard.owner:
            raise DatasetError("this run was started in another browser session", "only that session can cancel it")
        if self.proc.cancelling:
            return
        # returns at once; the poll loop sees the engine stop (it checkpoints and re-queues its trials) and
        # _on_finished then shows its summary — the page stays responsive meanwhile
        self.proc.request_cancel()
        self.state.run_state = "cancelling"
        self.state.run_status = f"{self.state.run_kind} cancelling…"

    # ------------------------------------------------------------------------------------------------ Apply
    @user_action
    def apply(self) -> None:
        dataset = self.require_dataset()
        self.require_idle()
        if self.results_dir is None:
            raise DatasetError("no search results to apply", "run a search to the end or open a results folder")
        case = str(self.state.apply_case)
        if case not in self.cases:
            raise DatasetError(f"case '{case}' is not in the dataset", "pick a case of the chosen dataset")
        choice(self.state.apply_tta, tuple(TTA_CHOICES), "test-time flips")
        image, _ = self.logic.outputs.dataset_files(dataset, case)
        out = self.results_dir.parent / "apply" if self.results_dir.name == "search" else self.results_dir / "apply"
        out = self.work_root.resolve(self.work_root.relative(out), must_exist=False, kind="output folder")
        args = self.logic.engine.predict_args(self.results_dir, [image], out / "predictions",
                                       tta=TTA_CHOICES[self.state.apply_tta])
        self._start("predict", args, out, lambda: self._apply_finished(dataset, case, out / "predictions"))

    def _apply_finished(self, dataset: Path, case: str, predictions: Path) -> None:
        volume, reference = self._load_case(dataset, case)
        reference.GetDisplayNode().SetVisibility(False)        # the prediction, not the reference labels
        prediction = self.logic.importer.import_prediction(predictions, volume,
                                                  label_names=self.logic.outputs.dataset_label_names(dataset))
        self._shown_nodes.append(prediction)
        self._show(volume, prediction)
        self.state.shown = f"{case}: image + predicted mask"
        self.state.notice = f"applied the best model to {case}"

    # ------------------------------------------------------------------------------------------------ engine
    def _start(self, kind: str, args: list[str], out: Path, on_success) -> None:
        self.progress = RunProgress()
        s = self.state
        s.busy, s.run_kind, s.run_progress, s.run_state = True, kind, 0, "running"
        s.run_status, s.run_log, s.notice = f"{kind} starting", "", ""
        self._on_done = on_success
        self.engines_started += 1
        self.proc = self.logic.engine.start_engine(args, out, on_event=self._on_event, on_log=self._on_log,
                                            on_finished=self._on_finished)
        # once started (it finishes in a later poll): the run is this session's, and holds the page for it
        self.run_session = self.guard.run_started() if self.guard is not None else None

    def _on_event(self, event: dict) -> None:
        changed = self.progress.update(event)
        s = self.state
        s.run_progress = round(100 * self.progress.fraction)
        s.run_status = self.progress.status
        if changed is not None:
            s.trial_rows = [dict(zip(("trial", "params", "value", "state"), row)) for row in self.progress.rows()]

    def _on_log(self, text: str) -> None:
        self.state.run_log = (self.state.run_log + text)[-4000:]

    def _on_finished(self, proc: EngineProcess) -> None:
        s = self.state
        s.busy = False
        if self.guard is not None:
            self.guard.run_ended()          # a session that has left releases the page once its run ends
        if proc.state == ProcessState.CANCELLED:
            s.run_state = "cancelled"
            summary = self.progress.status if self.progress is not None else ""
            s.run_status = (f"{s.run_kind} cancelled — {summary}" if summary.startswith("interrupted")
                            else f"{s.run_kind} cancelled")
            return
        if proc.state != ProcessState.SUCCEEDED:
            s.run_state = "failed"
            s.run_status = f"{s.run_kind} failed"
            s.error = proc.failure_message().replace("\nHint: ", " — ")
            return
        s.run_state, s.run_progress = "succeeded", 100
        s.run_status = f"{s.run_kind} finished"
        try:
            self._on_done()
        except AutoSegError as exc:
            s.error = exc.message + (f" — {exc.hint}" if exc.hint else "")

    def _start_polling(self, **_):
        asyncio.get_event_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            engine = self.proc is not None and self.proc.running
            if engine or self.plan_panel.runner.active:
                with self.state:
                    if engine:
                        self.proc.poll()
                    self.plan_panel.runner.poll()

    def reset_page(self) -> None:
        """A new browser session owns the page: it starts from a fresh page, not the previous session's dataset,
        views, logs or results (nothing is running: a session holds the page while its run goes)."""
        with self.state:
            self.plan_panel.runner.cancel()
            for node in self._shown_nodes:
                self.logic.nodes.remove_node(node)
            self._shown_nodes = []
            self.dataset_dir, self.cases, self.results_dir = None, [], None
            self.progress, self._on_done, self.run_session = RunProgress(), None, None
            self._init_state()
            self.plan_panel.reset()

    def shutdown(self) -> None:
        """Stop a running engine and a plan & forecast (the server is going away)."""
        if self.proc is not None and self.proc.running:
            self.proc.cancel()
        self.plan_panel.runner.close()


# ---------------------------------------------------------------------------------------------------- helpers
def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _hex(rgb) -> str:
    return "#" + "".join(f"{round(255 * float(c)):02x}" for c in rgb[:3])


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _mask_centre(logic: PanelLogic, segmentation, volume):
    """RAS centre of the segments, so every slice view cuts through the structure (None when empty)."""
    import vtk  # noqa: PLC0415

    seg = segmentation.GetSegmentation()
    value_of = {seg.GetNthSegment(i).GetName(): seg.GetNthSegment(i).GetLabelValue()
                for i in range(seg.GetNumberOfSegments())}
    if not value_of:
        return None
    labels, _ = logic.nodes.segmentation_to_array(segmentation, volume, value_of)
    where = np.argwhere(labels > 0)
    if where.size == 0:
        return None
    k, j, i = where.mean(axis=0)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix.MultiplyPoint((i, j, k, 1.0))[:3]
