"""The Widget without Qt, as far as that is honest: .ui XML vs. the names/classes/signals the code uses,
parameter-node fields vs. SlicerParameterName properties, CMake lists every file, and the module imports with
stand-in qt/ctk/ScriptedLoadableModule modules (Testing/slicer_module/slicer_stubs). The Widget's setup() itself only
runs in the desktop Slicer (AutoSegSearchTest)."""
from __future__ import annotations

import ast
import json
import re
import types
import xml.etree.ElementTree as ET

import pytest
import slicer

from slicer_testkit import MODULE_DIR, REPO

MODULE_FILE = MODULE_DIR / "AutoSegSearch.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "AutoSegSearch.ui"

# Widget names AutoSegSearch.py uses (``self.ui.<name>``) and the class each must have in Resources/UI/AutoSegSearch.ui
UI_WIDGETS = {
    "sceneSourceRadioButton": "QRadioButton",
    "folderSourceRadioButton": "QRadioButton",
    "imageVolumeSelector": "qMRMLNodeComboBox",
    "labelSelector": "qMRMLNodeComboBox",
    "addCaseButton": "QPushButton",
    "removeCaseButton": "QPushButton",
    "casesTable": "QTableWidget",
    "datasetFolderPathLineEdit": "ctkPathLineEdit",
    "modalityComboBox": "QComboBox",
    "outputFolderPathLineEdit": "ctkPathLineEdit",
    "labelNamesLabel": "QLabel",
    "proxyMethodComboBox": "QComboBox",
    "proxyRoiCheckBox": "QCheckBox",
    "proxyBudgetSpinBox": "QDoubleSpinBox",
    "proxyBudgetUnitComboBox": "QComboBox",
    "proxySelectButton": "QPushButton",
    "proxyTable": "QTableWidget",
    "proxyPreviewButton": "QPushButton",
    "spaceComboBox": "QComboBox",
    "strategyComboBox": "QComboBox",
    "proxyNetworkComboBox": "QComboBox",
    "trialsSpinBox": "QSpinBox",
    "timeLimitSpinBox": "QSpinBox",
    "useProxyDataCheckBox": "QCheckBox",
    "deviceComboBox": "QComboBox",
    "storageLineEdit": "QLineEdit",
    "planForecastButton": "QPushButton",
    "planStatusLabel": "QLabel",
    "planTable": "QTableWidget",
    "startButton": "QPushButton",
    "cancelButton": "QPushButton",
    "progressBar": "QProgressBar",
    "statusLabel": "QLabel",
    "trialTable": "QTableWidget",
    "logTextEdit": "QPlainTextEdit",
    "bestDiceLabel": "QLabel",
    "bestConfigLabel": "QLabel",
    "reportPlotLabel": "QLabel",
    "applyVolumeSelector": "qMRMLNodeComboBox",
    "ttaComboBox": "QComboBox",
    "applyButton": "QPushButton",
    "openReportButton": "QPushButton",
    "resultsCollapsibleButton": "ctkCollapsibleButton",
}

# signals the Widget may connect to, per widget class (Qt 5 / CTK / qMRML signatures)
SIGNALS = {
    "QPushButton": {"clicked(bool)", "clicked()", "toggled(bool)"},
    "QRadioButton": {"toggled(bool)", "clicked(bool)"},
    "QCheckBox": {"toggled(bool)", "stateChanged(int)"},
    "QTableWidget": {"cellDoubleClicked(int,int)", "cellClicked(int,int)", "itemSelectionChanged()"},
    "qMRMLNodeComboBox": {"currentNodeChanged(vtkMRMLNode*)", "currentNodeChanged(bool)"},
    "QComboBox": {"currentIndexChanged(int)", "currentTextChanged(QString)"},
    "ctkPathLineEdit": {"currentPathChanged(QString)"},
}


def ui_widgets() -> dict[str, str]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def module_ast() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text())


def ui_names_used_in_code() -> set[str]:
    names = set()
    for node in ast.walk(module_ast()):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            names.add(node.attr)
    return names


def declared_ui_widgets() -> dict[str, str]:
    return UI_WIDGETS


def test_every_widget_the_code_uses_exists_in_the_ui_with_the_expected_class():
    in_ui, declared, used = ui_widgets(), declared_ui_widgets(), ui_names_used_in_code()
    assert used, "the Widget must use self.ui"
    assert used <= set(declared), f"used but not declared in UI_WIDGETS: {sorted(used - set(declared))}"
    for name, cls in declared.items():
        assert name in in_ui, f"{name} is not in {UI_FILE.name}"
        assert in_ui[name] == cls, f"{name} is a {in_ui[name]} in the .ui, the code expects {cls}"


def test_connected_signals_exist_on_those_widgets():
    declared = declared_ui_widgets()
    connects = 0
    for node in ast.walk(module_ast()):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
                and isinstance(node.func.value, ast.Attribute) and isinstance(node.func.value.value, ast.Attribute)
                and node.func.value.value.attr == "ui"):
            name, signal = node.func.value.attr, node.args[0].value
            assert signal in SIGNALS[declared[name]], f"{name} ({declared[name]}) has no signal {signal}"
            connects += 1
    assert connects >= 8


def test_ui_has_the_five_collapsible_sections():
    root = ET.parse(UI_FILE).getroot()
    sections = [w.find("property[@name='text']/string").text for w in root.iter("widget")
                if w.get("class") == "ctkCollapsibleButton"]
    assert sections == ["Data", "Proxy data", "Search", "Run", "Results"]


def test_parameter_node_fields_match_slicer_parameter_names():
    root = ET.parse(UI_FILE).getroot()
    bound = {p.find("string").text for p in root.iter("property") if p.get("name") == "SlicerParameterName"}
    fields = set()
    for node in module_ast().body:
        if isinstance(node, ast.ClassDef) and node.name == "AutoSegSearchParameterNode":
            fields = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
    assert bound and bound <= fields, f"no parameter field for {sorted(bound - fields)}"


# combo boxes the Widget fills with the engine's lists (AutoSegSearchLib.engine_choices): widget → (key, field)
ENGINE_COMBOS = {"proxyMethodComboBox": ("proxy_methods", "proxyMethod"), "spaceComboBox": ("spaces", "space"),
                 "strategyComboBox": ("strategies", "strategy"), "proxyNetworkComboBox": ("proxy_nets", "proxyNetwork")}


def test_combo_box_items_are_values_the_logic_accepts():
    from AutoSegSearchLib.logic import TTA_CHOICES, engine_choices

    root = ET.parse(UI_FILE).getroot()
    items = {w.get("name"): [i.find("property/string").text for i in w.findall("item")]
             for w in root.iter("widget") if w.get("class") == "QComboBox"}
    defaults = {n.target.id: ast.literal_eval(n.value) for c in module_ast().body
                if isinstance(c, ast.ClassDef) and c.name == "AutoSegSearchParameterNode"
                for n in c.body if isinstance(n, ast.AnnAssign) and n.value is not None}
    # the engine's lists: the .ui holds no copy, the Widget fills these combos from the engine, and every
    # parameter-node default is a value the engine offers
    choices = engine_choices()
    for combo, (key, field) in ENGINE_COMBOS.items():
        assert items[combo] == [], f"{combo} must be filled from the engine, not listed in the .ui"
        assert defaults[field] in choices[key], (field, defaults[field], choices[key])
    fill = next(f for c in module_ast().body if isinstance(c, ast.ClassDef) and c.name == "AutoSegSearchWidget"
                for f in c.body if isinstance(f, ast.FunctionDef) and f.name == "fillEngineChoices")
    filled = {n.attr: (k.value, f.value) for t in ast.walk(fill) if isinstance(t, ast.Tuple) and len(t.elts) == 3
              for n, k, f in [t.elts] if isinstance(n, ast.Attribute) and isinstance(k, ast.Constant)}
    assert filled == ENGINE_COMBOS
    assert items["deviceComboBox"] == ["auto", "cpu", "cuda"]
    # Results → "Test-time flips": every item maps to predict_args(tta=None|True|False), the default included
    assert items["ttaComboBox"] == list(TTA_CHOICES) and list(TTA_CHOICES.values()) == [None, True, False]
    assert defaults["tta"] == items["ttaComboBox"][0] and defaults["device"] == items["deviceComboBox"][0]


def test_module_imports_with_stand_in_qt_and_its_logic_runs_on_real_mrml(module_with_stubs, tmp_path):
    mod = module_with_stubs
    parent = types.SimpleNamespace()
    mod.AutoSegSearch(parent)
    assert parent.title == "AutoSegSearch" and parent.categories == ["Segmentation"]
    assert "Apply" not in parent.helpText or parent.helpText
    logic = mod.AutoSegSearchLogic()
    assert logic.scene is slicer.mrmlScene
    # the module's Logic is the Lib logic: it refuses bad input the same way
    with pytest.raises(Exception, match="no cases"):
        logic.exporter.export_dataset([], tmp_path / "ds")
    params = logic.getParameterNode()
    assert params is not None
    assert issubclass(mod.AutoSegSearchTest, __import__("unittest").TestCase)


def test_cmake_lists_every_script_and_resource():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "AutoSegSearch")
    listed = set(re.findall(r"^\s+(\S+\.(?:py|ui|png|json|txt))\s*$", cmake, re.M))
    on_disk = {str(p.relative_to(MODULE_DIR)) for p in (MODULE_DIR / "AutoSegSearchLib").glob("*.py")}
    on_disk |= {str(p.relative_to(MODULE_DIR)) for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    on_disk.add("AutoSegSearch.py")
    assert on_disk == listed, f"missing: {sorted(on_disk - listed)}, stale: {sorted(listed - on_disk)}"
    assert "slicerMacroBuildScriptedModule" in cmake and "slicer_add_python_unittest(SCRIPT AutoSegSearch.py)" in cmake


def test_extension_metadata_and_catalogue_entry():
    top = (REPO / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf'set\({key} "[^"]+"\)', top), key
    assert "add_subdirectory(AutoSegSearch)" in top
    entry = json.loads((REPO / "AutoSegSearch.json").read_text())
    assert {"scm_url", "scm_revision", "category", "build_dependencies", "tier"} <= set(entry)
    # every screenshot the metadata advertises exists in the repository
    for url in re.search(r'EXTENSION_SCREENSHOTURLS "([^"]+)"', top).group(1).split():
        assert (REPO / url.split("/main/", 1)[1]).is_file(), url
    assert (REPO / re.search(r'EXTENSION_ICONURL "([^"]+)"', top).group(1).split("/main/", 1)[1]).is_file()
