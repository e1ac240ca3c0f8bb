"""AutoSegSearch: find a segmentation network and training recipe for your labelled images, from inside Slicer.

This file is thin on purpose: the module description, a Widget that only wires the panels to
``AutoSegSearchLib`` (Qt-free logic, engine process, event folding, installer), and the module test.
The engine's work (AutoSegCore) always runs as a child process, so Slicer stays responsive and a crash in
training cannot take the application down; the combo boxes list what the engine answers (``engine_choices``).
"""
from __future__ import annotations

import os
import pathlib
import tempfile
import time

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper

from AutoSegSearchLib.logic import PanelLogic
from AutoSegSearchLib.logic import TTA_CHOICES, CasePair, ConfigError, DatasetError
from AutoSegSearchLib.plan_forecast import PlanForecast
from AutoSegSearchLib.process import ProcessState
from AutoSegSearchLib.run_parameters import SearchParameters, budget_value
from AutoSegSearchLib.progress import RunProgress

class AutoSegSearch(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "AutoSegSearch"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["AutoSegSearch developers"]
        self.parent.helpText = (
            "Search a segmentation network and training recipe for your labelled CT/MR images (proxy data, "
            "proxy networks, BOHB/random/RL/CRS/MOEA-D strategies), then apply the best model to new volumes. "
            "See <a href='https://github.com/autosegsearch/AutoSegSearch/blob/main/docs/slicer.md'>the manual</a>.")
        self.parent.acknowledgementText = (
            "Implements methods of Wong et al. (proxy data/networks), the BOHB U-Net thesis, SegNAS3D and "
            "EMONAS-Net. Built on MONAI, Optuna and pymoo.")


@parameterNodeWrapper
class AutoSegSearchParameterNode:
    """Panel settings saved with the scene (the Logic never sees this class: it gets plain values)."""

    datasetFolder: pathlib.Path
    outputFolder: pathlib.Path
    modality: str = "CT"
    proxyMethod: str = "mi"
    proxyRoi: bool = True
    proxyBudget: float = 25.0
    proxyBudgetUnit: str = "% of cases"
    space: str = "unet-pipeline"
    strategy: str = "random"
    proxyNetwork: str = "full"
    trials: int = 20
    timeLimitMinutes: int = 0
    finalTimeMinutes: int = 0
    useProxyData: bool = False
    device: str = "auto"
    # no ``storage``: a study URL may hold a password, and the scene file keeps every field here (storageLineEdit
    # is read when a search starts, never saved)
    tta: str = "as the model decided"                 # or "on" / "off"


class AutoSegSearchLogic(ScriptedLoadableModuleLogic, PanelLogic):
    """The Slicer module's logic: the panels' Qt-free PanelLogic bound to the application's scene and logics."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        app_logic = slicer.app.applicationLogic() if hasattr(slicer, "app") else None
        PanelLogic.__init__(self, slicer.mrmlScene, app_logic=app_logic)

    def getParameterNode(self):
        return AutoSegSearchParameterNode(super().getParameterNode())


class AutoSegSearchWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    POLL_MS = 500

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cases: list[CasePair] = []
        self._process = None
        self._progress = RunProgress()
        self._timer = None
        self._onProcessDone = None
        self._datasetDir = None
        self._searchDir = None
        self._planForecast = None

    # ------------------------------------------------------------------------------------------------ set-up
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AutoSegSearch.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AutoSegSearchLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCase)
        self.ui.removeCaseButton.connect("clicked(bool)", self.onRemoveCase)
        self.ui.sceneSourceRadioButton.connect("toggled(bool)", self.updateGuiState)
        self.ui.proxySelectButton.connect("clicked(bool)", self.onProxySelect)
        self.ui.proxyPreviewButton.connect("clicked(bool)", self.onProxyPreview)
        self.ui.proxyTable.connect("cellDoubleClicked(int,int)", lambda row, col: self.onProxyPreview())
        self.fillEngineChoices()
        self._planForecast = PlanForecast(self.logic.engine, on_result=self.showPlanForecast)
        self.ui.planForecastButton.connect("clicked(bool)", self.onPlanForecast)
        self.ui.startButton.connect("clicked(bool)", self.onStartSearch)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReport)

        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_MS)
        self._timer.connect("timeout()", self.onPoll)
        self.initializeParameterNode()
        self.updateGuiState()

    def cleanup(self):
        self.removeObservers()
        if self._process is not None and self._process.running:
            self._process.cancel()
        if self._planForecast is not None:
            self._planForecast.close()
        if self._timer is not None:
            self._timer.stop()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)
        self._cases = []

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if str(self._parameterNode.outputFolder) in ("", "."):
            self._parameterNode.outputFolder = pathlib.Path(tempfile.gettempdir()) / "AutoSegSearch"

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onSettingsChanged)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onSettingsChanged)

    # ------------------------------------------------------------------------------------------------ Data
    def onAddCase(self):
        volume, label = self.ui.imageVolumeSelector.currentNode(), self.ui.labelSelector.currentNode()
        with slicer.util.tryWithErrorDisplay("Cannot add this case.", waitCursor=True):
            self.logic.exporter.validate_cases([CasePair(volume, label)])
            self._cases.append(CasePair(volume, label))
            self.refreshCases()

    def onRemoveCase(self):
        row = self.ui.casesTable.currentRow()
        if 0 <= row < len(self._cases):
            del self._cases[row]
            self.refreshCases()

    def refreshCases(self):
        table = self.ui.casesTable
        table.setRowCount(len(self._cases))
        for row, pair in enumerate(self._cases):
            table.setItem(row, 0, qt.QTableWidgetItem(pair.volume.GetName()))
            table.setItem(row, 1, qt.QTableWidgetItem(pair.label.GetName()))
        names = self.logic.exporter.label_names_of(self._cases) if self._cases else {}
        self.ui.labelNamesLabel.text = ", ".join(f"{v}: {n}" for v, n in names.items()) or "(none yet)"
        self.updateGuiState()

    def datasetForEngine(self) -> pathlib.Path:
        """The dataset folder: the chosen one, or the scene cases exported into the output folder."""
        p = self._parameterNode
        if self.ui.folderSourceRadioButton.checked:
            folder = pathlib.Path(p.datasetFolder)
            self.ui.labelNamesLabel.text = ", ".join(
                f"{v}: {n}" for v, n in self.logic.outputs.dataset_label_names(folder).items())
            return folder
        out = pathlib.Path(p.outputFolder) / time.strftime("dataset-%Y%m%d-%H%M%S")
        exported = self.logic.exporter.export_dataset(self._cases, out, modality=p.modality)
        self._log(f"exported {len(exported.cases)} cases to {exported.path}")
        return exported.path

    # ------------------------------------------------------------------------------------------------ engine
    def fillEngineChoices(self, show: bool = False) -> bool:
        """The engine's lists into the combo boxes (the .ui holds none), keeping each chosen value.  False, with
        the reason in the status line (and a dialog with ``show``), while the engine cannot answer (not installed)."""
        try:
            choices = self.logic.engine.engine_choices()
        except ConfigError as exc:
            self.ui.statusLabel.text = f"{exc.message} — {exc.hint}"
            if show:
                slicer.util.errorDisplay(f"{exc.message}\n\n{exc.hint}", windowTitle="AutoSegSearch engine")
            return False
        p = self._parameterNode
        for combo, key, field in ((self.ui.proxyMethodComboBox, "proxy_methods", "proxyMethod"),
                                  (self.ui.spaceComboBox, "spaces", "space"),
                                  (self.ui.strategyComboBox, "strategies", "strategy"),
                                  (self.ui.proxyNetworkComboBox, "proxy_nets", "proxyNetwork")):
            keep = getattr(p, field) if p else None
            combo.clear()
            combo.addItems(choices[key])
            if keep in choices[key]:
                combo.setCurrentText(keep)
        return True

    def ensureEngine(self) -> bool:
        from AutoSegSearchLib import install

        if not install.engine_installed():
            try:
                with slicer.util.WaitCursor():
                    agreed = install.install_engine(
                        confirm=lambda text: slicer.util.confirmOkCancelDisplay(text, "Install AutoSegSearch engine"),
                        pip_install=slicer.util.pip_install)
                if not agreed:
                    return False
            except install.InstallError as exc:
                slicer.util.errorDisplay(str(exc))
                return False
        return self.ui.spaceComboBox.count > 0 or self.fillEngineChoices(show=True)

    def engineEnv(self):
        return {"CUDA_VISIBLE_DEVICES": "-1"} if self._parameterNode.device == "cpu" else None

    def startEngine(self, args, workDir, onDone, env=None):
        self._progress = RunProgress()
        self.ui.trialTable.setRowCount(0)
        self.ui.progressBar.setValue(0)
        self._onProcessDone = onDone
        env = {**(self.engineEnv() or {}), **(env or {})} or None
        self._process = self.logic.engine.start_engine(args, workDir, on_event=self.onEngineEvent, on_log=self._log,
                                                on_finished=self.onEngineFinished, env=env)
        self._log("$ " + " ".join(self._process.command))
        self._timer.start()
        self.updateGuiState()

    def onPoll(self):
        if self._process is not None:
            self._process.poll()
        self._planForecast.poll()
        if not (self._process is not None and self._process.running) and not self._planForecast.active:
            self._timer.stop()

    def onEngineEvent(self, event):
        trial = self._progress.update(event)
        if trial is not None:
            rows = self._progress.rows()
            self.ui.trialTable.setRowCount(len(rows))
            for r, cells in enumerate(rows):
                for c, text in enumerate(cells):
                    self.ui.trialTable.setItem(r, c, qt.QTableWidgetItem(text))
        self.ui.progressBar.setValue(int(100 * self._progress.fraction))
        self.ui.statusLabel.text = self._progress.status

    def onEngineFinished(self, process):
        self.updateGuiState()
        if process.state == ProcessState.SUCCEEDED and self._onProcessDone:
            with slicer.util.tryWithErrorDisplay("Could not load the engine's results.", waitCursor=True):
                self._onProcessDone()
        elif process.state == ProcessState.FAILED:
            slicer.util.errorDisplay(process.failure_message(), windowTitle="AutoSegSearch engine failed")
        elif process.state == ProcessState.CANCELLED:
            # the engine's own summary ("interrupted: 3 complete, 1 stopped and re-queued …") when it gave one
            status = self._progress.status if self._progress is not None else ""
            self.ui.statusLabel.text = status if status.startswith("interrupted") else "cancelled"
            self._log("cancelled; re-run the same search to resume it")

    def onCancel(self):
        if self._process is not None and self._process.running and not self._process.cancelling:
            # returns at once: the poll timer sees the engine stop (it checkpoints and re-queues its trials)
            pids = self._process.request_cancel()
            self._log(f"cancelling: asked the engine to stop (processes {pids})")
            self.ui.statusLabel.text = "cancelling…"
            self.updateGuiState()

    def _log(self, text):
        self.ui.logTextEdit.appendPlainText(text.rstrip("\n"))

    # ------------------------------------------------------------------------------------------------ Proxy data
    def onProxySelect(self):
        if not self.ensureEngine():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot start the proxy selection.", waitCursor=True):
            self._datasetDir = self.datasetForEngine()
            budget = budget_value(p.proxyBudget, p.proxyBudgetUnit)
            out = pathlib.Path(p.outputFolder) / time.strftime("proxy-%Y%m%d-%H%M%S")
            args = self.logic.engine.proxy_args(self._datasetDir, out, p.proxyMethod, p.proxyRoi, budget, preview=True)
            self.startEngine(args, out, onDone=lambda: self.showProxyResult(out))

    def showProxyResult(self, out):
        result = self.logic.outputs.read_proxy_result(out)
        table = self.ui.proxyTable
        table.setRowCount(len(result.cases))
        for row, case in enumerate(result.cases):
            score = "" if case.score is None else f"{case.score:.4g}"
            for col, text in enumerate((case.name, score, str(case.rank), "yes" if case.selected else "")):
                table.setItem(row, col, qt.QTableWidgetItem(text))
        self.ui.statusLabel.text = f"proxy data: {len(result.selected)} of {len(result.cases)} cases selected"

    def onProxyPreview(self):
        row = self.ui.proxyTable.currentRow()
        if row < 0 or self._datasetDir is None:
            return
        case = self.ui.proxyTable.item(row, 0).text()
        with slicer.util.tryWithErrorDisplay(f"Cannot load case {case}.", waitCursor=True):
            volume, segmentation = self.logic.importer.load_case(self._datasetDir, case)
            self.logic.importer.show_in_views(volume, segmentation)
            slicer.util.resetSliceViews()

    # ------------------------------------------------------------------------------------------------ Search
    def searchParameters(self) -> SearchParameters:
        """The Search panel as one checked value: Start and Plan & forecast run the same search."""
        p = self._parameterNode
        return SearchParameters.from_panel(
            self.logic.engine.engine_choices(), space=p.space, strategy=p.strategy, trials=p.trials,
            time_minutes=p.timeLimitMinutes or None, final_time_minutes=p.finalTimeMinutes or None,
            use_proxy_data=p.useProxyData, proxy_method=p.proxyMethod, proxy_roi=p.proxyRoi,
            proxy_budget=p.proxyBudget, proxy_budget_unit=p.proxyBudgetUnit, proxy_net=p.proxyNetwork,
            device=p.device)

    def planKey(self):
        """What a plan and forecast depend on, as the panel holds it (compared to mark a shown answer stale)."""
        source = str(self._parameterNode.datasetFolder) if self.ui.folderSourceRadioButton.checked \
            else tuple(map(id, self._cases))
        try:
            return source, self.searchParameters()
        except (ConfigError, DatasetError):     # values being edited: no plan can be current for them
            return source, None

    def onPlanForecast(self):
        if not self.ensureEngine():
            return
        with slicer.util.tryWithErrorDisplay("Cannot plan and forecast.", waitCursor=True):
            self._datasetDir = self.datasetForEngine()
            self._planForecast.request(self._datasetDir, self._parameterNode.outputFolder, self.searchParameters(),
                                       key=self.planKey(), env=self.engineEnv())
            self.ui.planTable.setRowCount(0)
            self.ui.planStatusLabel.text = "planning and forecasting in the background (a few timed training steps)…"
            self._timer.start()

    def showPlanForecast(self, result):
        """The child's plan and forecast in the read-only table, before Start; each row's why as its tooltip."""
        rows = result.rows()
        self.ui.planTable.setRowCount(len(rows))
        for r, (name, value, why) in enumerate(rows):
            for c, text in enumerate((name, value)):
                item = qt.QTableWidgetItem(text)
                item.setToolTip(why)
                self.ui.planTable.setItem(r, c, item)
        self.ui.planStatusLabel.text = result.summary()
        self.onSettingsChanged()

    def onSettingsChanged(self, *unused):
        if self._planForecast is not None and self._planForecast.shown is not None and self._parameterNode:
            stale = self._planForecast.stale(self.planKey())
            self.ui.planStatusLabel.text = ("settings changed since: press Plan & forecast again" if stale
                                            else self._planForecast.shown.summary())

    def onStartSearch(self):
        if not self.ensureEngine():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Cannot start the search.", waitCursor=True):
            self._datasetDir = self._datasetDir or self.datasetForEngine()
            self._searchDir = pathlib.Path(p.outputFolder) / time.strftime("search-%Y%m%d-%H%M%S")
            # the password of a study URL goes to the engine in its environment: not on its command line (which
            # the log shows and `ps` lists), not in the scene
            from AutoSegCore.utils.storage_url import split_password

            storage, secret = split_password(self.ui.storageLineEdit.text.strip() or None)
            args = self.searchParameters().search_args(self._datasetDir, self._searchDir, storage=storage)
            self._planForecast.cancel()          # the search forecasts again before its first trial
            self.startEngine(args, self._searchDir, onDone=self.showSearchResult, env=secret)

    def showSearchResult(self):
        summary = self.logic.outputs.read_search_summary(self._searchDir) or (self._progress.done or {})
        value, params = self.logic.outputs.best_of(summary)
        self.ui.bestDiceLabel.text = "-" if value is None else f"{value:.4f}"
        self.ui.bestConfigLabel.text = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        plots = sorted(self._searchDir.glob("**/*.png"))
        if plots:
            self.ui.reportPlotLabel.setPixmap(qt.QPixmap(str(plots[0])).scaledToWidth(380))
        self.ui.resultsCollapsibleButton.collapsed = False
        self.updateGuiState()

    # ------------------------------------------------------------------------------------------------ Results
    def onApply(self):
        if not self.ensureEngine():
            return
        volume = self.ui.applyVolumeSelector.currentNode()
        with slicer.util.tryWithErrorDisplay("Cannot apply the model.", waitCursor=True):
            work = self._searchDir / "apply" / time.strftime("%Y%m%d-%H%M%S")
            image = self.logic.importer.write_volume_for_engine(volume, work / "input")
            args = self.logic.engine.predict_args(self._searchDir, [image], work / "predictions",
                                           tta=TTA_CHOICES.get(self._parameterNode.tta),
                                           device=self._parameterNode.device)

            def load():
                names = self.logic.outputs.dataset_label_names(self._datasetDir) if self._datasetDir else None
                segmentation = self.logic.importer.import_prediction(work / "predictions", volume, label_names=names)
                self.logic.importer.show_in_views(volume, segmentation)

            self.startEngine(args, work, onDone=load)

    def onOpenReport(self):
        report = self.logic.outputs.search_dir(self._searchDir).report if self._searchDir else None
        if report is None or not report.exists():
            slicer.util.errorDisplay("No report yet: run a search first.")
            return
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(report)))

    def updateGuiState(self, *unused):
        running = self._process is not None and self._process.running
        fromScene = self.ui.sceneSourceRadioButton.checked
        haveData = bool(self._cases) if fromScene else True
        self.ui.imageVolumeSelector.enabled = fromScene
        self.ui.labelSelector.enabled = fromScene
        self.ui.addCaseButton.enabled = fromScene
        self.ui.removeCaseButton.enabled = fromScene and bool(self._cases)
        self.ui.datasetFolderPathLineEdit.enabled = not fromScene
        self.ui.proxySelectButton.enabled = haveData and not running
        self.ui.proxyPreviewButton.enabled = self._datasetDir is not None
        self.ui.startButton.enabled = haveData and not running
        self.ui.planForecastButton.enabled = haveData and not running
        self.ui.cancelButton.enabled = running and not self._process.cancelling
        folder = self.logic.outputs.search_dir(self._searchDir) if self._searchDir is not None else None
        self.ui.applyButton.enabled = folder is not None and folder.best.exists() and not running
        self.ui.openReportButton.enabled = folder is not None and folder.report.exists()


class AutoSegSearchTest(ScriptedLoadableModuleTest):
    """Runs the Logic end to end inside the real Slicer: scene cases -> dataset -> engine -> segments.

    Data: $AUTOSEG_TEST_DATA (an MSD folder), default: the repository's Resources/DemoData/Hippocampus.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_EndToEnd()

    def test_EndToEnd(self):
        demo = pathlib.Path(__file__).resolve().parents[1] / "Resources" / "DemoData" / "Hippocampus"
        data = pathlib.Path(os.environ.get("AUTOSEG_TEST_DATA", str(demo)))
        if not (data / "dataset.json").exists():
            self.delayDisplay(f"Skipped: no test dataset at {data} (set AUTOSEG_TEST_DATA)")
            return
        self.delayDisplay("Loading cases")
        logic = AutoSegSearchLogic()
        volumes = slicer.modules.volumes.logic()
        cases = sorted(p.name[:-7] for p in (data / "imagesTr").glob("*.nii.gz"))[:4]
        pairs = []
        for case in cases:
            volume = volumes.AddArchetypeVolume(str(data / "imagesTr" / f"{case}.nii.gz"), case, 0)
            label = volumes.AddArchetypeVolume(str(data / "labelsTr" / f"{case}.nii.gz"), f"{case}_label", 1)
            pairs.append(CasePair(volume, label))
        work = pathlib.Path(tempfile.mkdtemp(prefix="AutoSegSearchTest-"))
        dataset = logic.exporter.export_dataset(pairs, work / "dataset", modality="MRI")
        self.assertEqual(len(dataset.cases), len(cases))

        self.delayDisplay("Training a tiny model in a child process")
        (work / "tiny.yaml").write_text("network: {depth: 2, channels: 4}\n"
                                        "training: {epochs: 2, steps_per_epoch: 2, batch_size: 2}\n")
        events = []
        proc = logic.engine.start_engine(logic.engine.train_args(dataset.path, work / "model", config=work / "tiny.yaml",
                                                   device="cpu"), work, on_event=events.append)
        while proc.running:
            proc.poll()
            slicer.app.processEvents()
            time.sleep(0.1)
        self.assertEqual(proc.state, ProcessState.SUCCEEDED, proc.failure_message())
        self.assertIn("epoch", [e["event"] for e in events])

        self.delayDisplay("Applying the model")
        segmentation = logic.importer.apply_model(work / "model", pairs[0].volume, work / "apply", device="cpu")
        self.assertGreaterEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 1)
        self.delayDisplay("Test passed")
