"""The page: a Vuetify drawer with the module's five panels (Data, Proxy data, Search, Run, Results) beside
trame-slicer's slice and 3D views. Layout only — every action calls the controller (:mod:`AutoSegWeb.app`).

Elements the browser test finds carry stable ids (``#error``, ``#proxy-table``, ``#trial-table``, ...).
"""
from __future__ import annotations

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v
from trame_slicer.app.ui.flex_container import FlexContainer

from AutoSegSearchLib.run_parameters import PROXY_UNITS

CSS = """
html { overflow-y: hidden; }
.asg-panels .v-expansion-panel-text__wrapper { padding: 8px 12px 12px; }
.asg-table td, .asg-table th { font-size: 12px !important; height: 28px !important; padding: 0 6px !important; }
.asg-table tr.asg-selected td { font-weight: 600; }
.asg-kv { font-size: 12px; }
.asg-log { font-family: monospace; font-size: 11px; white-space: pre-wrap; max-height: 140px; overflow-y: auto;
           background: rgba(127,127,127,0.12); padding: 4px 6px; border-radius: 4px; }
"""


def _panel(value: str, title: str, icon: str):
    panel = v.VExpansionPanel(value=value)
    with panel:
        with v.VExpansionPanelTitle(id=f"panel-{value}"):
            v.VIcon(icon, size="small", classes="mr-2")
            html.Span(title, classes="font-weight-medium")
    return panel


def build_ui(server, layout_manager, ctrl_app):
    """Build the page for ``ctrl_app`` (an AutoSegWebApp) and return the layout."""
    app = ctrl_app
    with SinglePageWithDrawerLayout(server, width=440, theme="dark") as layout:
        client.Style(CSS)
        layout.title.set_text("AutoSegSearch")
        with layout.toolbar:
            v.VSpacer()
            v.VChip("{{ run_status }}", id="run-status", size="small", classes="mr-2",
                    color=("run_state === 'failed' ? 'error' : run_state === 'succeeded' ? 'success' : "
                           "busy ? 'primary' : 'default'",))
            v.VChip("{{ shown || 'no case shown' }}", id="shown", size="small", classes="mr-2", variant="outlined")
            with html.Div(id="segments", classes="mr-4"):       # legend of what the views show
                v.VChip("{{ s.name }}", v_for="s in segments", key="s.name", color=("s.color",), size="small",
                        classes="ml-1 segment-chip", variant="flat")

        with layout.drawer:
            v.VAlert(v_if=("error",), text=("error",), type="error", density="compact", closable=True,
                     id="error", classes="ma-2", click_close="error = ''")
            v.VAlert(v_if=("notice && !error",), text=("notice",), type="success", density="compact",
                     id="notice", classes="ma-2", variant="tonal")
            with v.VExpansionPanels(v_model=("panels",), multiple=True, variant="accordion", classes="asg-panels"):
                _data_panel(app)
                _proxy_panel(app)
                _search_panel(app)
                _run_panel(app)
                _results_panel(app)

        with layout.content:
            with FlexContainer(row=True, fill_height=True, style="height: calc(100vh - 96px);"):
                layout_manager.initialize_layout_grid(layout)
        layout.footer.clear()
        with layout.footer:
            html.Span("data: {{ data_root }} · work: {{ work_root }}", classes="text-caption text-grey")
    return layout


def _data_panel(app):
    with _panel("data", "Data", "mdi-database"):
        with v.VExpansionPanelText():
            v.VCombobox(label="Dataset folder (inside the data folder)", v_model=("dataset_text",),
                        items=("datasets",), density="compact", id="dataset-input", hide_details=True,
                        classes="mb-2", hint="MSD / nnU-Net raw layout with dataset.json")
            v.VBtn("Choose dataset", click=(app.choose_dataset, "[dataset_text]"), color="primary", id="choose-dataset",
                   size="small", block=True, disabled=("busy",))
            with html.Div(v_if=("dataset",), classes="asg-kv mt-2", id="dataset-info"):
                html.Div("<b>{{ dataset.name }}</b> ({{ dataset.folder }})")
                html.Div("{{ dataset.cases }} cases · {{ dataset.modality }} · labels: {{ dataset.labels }}")


def _proxy_panel(app):
    with _panel("proxy", "Proxy data", "mdi-filter-variant"):
        with v.VExpansionPanelText():
            with v.VRow(dense=True):
                with v.VCol(cols=4):
                    v.VSelect(label="Method", v_model=("proxy_method",), items=("proxy_methods",),
                              density="compact", hide_details=True)
                with v.VCol(cols=4):
                    v.VTextField(label="Budget", v_model=("proxy_budget",), type="number", density="compact",
                                 hide_details=True, id="proxy-budget")
                with v.VCol(cols=4):
                    v.VSelect(label="Unit", v_model=("proxy_unit",), items=(str(list(PROXY_UNITS)),),
                              density="compact", hide_details=True)
            v.VSwitch(label="ROI: compare the labels' bounding boxes", v_model=("proxy_roi",), density="compact",
                      hide_details=True, color="primary")
            v.VBtn("Select proxy data", click=app.run_proxy, color="primary", size="small", block=True,
                   id="run-proxy", disabled=("busy || !dataset",))
            with v.VTable(v_if=("proxy_rows.length",), density="compact", height=190, fixed_header=True,
                          classes="asg-table mt-2", id="proxy-table"):
                with html.Thead():
                    with html.Tr():
                        for head in ("Case", "Score", "Rank", "Selected", ""):
                            html.Th(head)
                with html.Tbody():
                    with html.Tr(v_for="row in proxy_rows", key="row.name",
                                 classes=("{'asg-selected': row.selected, 'proxy-row': true}",)):
                        html.Td("{{ row.name }}")
                        html.Td("{{ row.score }}")
                        html.Td("{{ row.rank }}")
                        with html.Td():
                            v.VIcon("mdi-check", v_if=("row.selected",), size="small", color="success")
                        with html.Td():
                            v.VBtn("Preview", size="x-small", variant="tonal", click=(app.preview, "[row.name]"),
                                   classes="preview-btn", disabled=("busy",))
            v.VImg(v_if=("proxy_preview",), src=("proxy_preview",), classes="mt-2", max_height=160,
                   id="proxy-preview")


def _search_panel(app):
    with _panel("search", "Search", "mdi-magnify"):
        with v.VExpansionPanelText():
            with v.VRow(dense=True):
                with v.VCol(cols=6):
                    v.VSelect(label="Space", v_model=("space",), items=("spaces",), density="compact",
                              hide_details=True)
                with v.VCol(cols=6):
                    v.VSelect(label="Strategy", v_model=("strategy",), items=("strategies",), density="compact",
                              hide_details=True)
                with v.VCol(cols=6):
                    v.VSelect(label="Proxy network", v_model=("proxy_net",), items=("proxy_nets",),
                              density="compact", hide_details=True)
                with v.VCol(cols=6):
                    v.VTextField(label="Trials", v_model=("trials",), type="number", density="compact",
                                 hide_details=True, id="trials")
                with v.VCol(cols=6):
                    v.VTextField(label="Search minutes", placeholder="empty: by trials", persistent_placeholder=True,
                                 v_model=("search_minutes",), density="compact", hide_details=True,
                                 id="search-minutes")
                with v.VCol(cols=6):
                    v.VTextField(label="Final training minutes (empty: by epochs)", v_model=("final_minutes",),
                                 density="compact", hide_details=True, id="final-minutes")
                with v.VCol(cols=4):
                    v.VTextField(label="Epochs", v_model=("epochs",), type="number", density="compact",
                                 hide_details=True, id="epochs")
                with v.VCol(cols=4):
                    v.VTextField(label="Steps/epoch", v_model=("steps_per_epoch",), type="number",
                                 density="compact", hide_details=True, id="steps")
                with v.VCol(cols=4):
                    v.VTextField(label="Final epochs", v_model=("final_epochs",), type="number",
                                 density="compact", hide_details=True, id="final-epochs")
            v.VSwitch(label="Search on the proxy-data subset", v_model=("search_on_proxy",), density="compact",
                      hide_details=True, color="primary")
            v.VTextField(label="Run name (folder inside the work folder)", v_model=("run_name",),
                         density="compact", hide_details=True, id="run-name")
            _plan_forecast(app)


def _plan_forecast(app):
    """Before Start: the plan and the forecast for these settings, read-only; each row's why as its tooltip."""
    with html.Div(id="plan-forecast", classes="mt-2"):
        v.VBtn("Plan & forecast", click=app.plan_panel.request, size="small", block=True, variant="tonal",
               color="primary", id="plan-forecast-button", disabled=("busy || !dataset",),
               prepend_icon="mdi-timer-sand")
        v.VProgressLinear(v_if=("plan_busy",), indeterminate=True, color="primary", classes="mt-1")
        html.Div("{{ plan_status }}", v_if=("plan_status",), classes="text-caption mt-1", id="plan-status")
        html.Div("settings changed since: press Plan & forecast again", v_if=("plan_stale",),
                 classes="text-caption text-warning", id="plan-stale")
        v.VAlert(v_if=("plan_error",), text=("plan_error",), type="warning", density="compact", variant="tonal",
                 classes="mt-1", id="plan-error")
        with v.VTable(v_if=("plan_rows.length",), density="compact", classes="asg-table mt-1", id="plan-table",
                      style=("plan_stale ? 'opacity: 0.5' : ''",)):
            with html.Tbody():
                with html.Tr(v_for="row in plan_rows", key="row.name", classes="plan-row",
                             raw_attrs=[':title="row.why"']):
                    html.Td("{{ row.name }}", classes="text-medium-emphasis", style="white-space: nowrap;")
                    html.Td("{{ row.value }}")


def _run_panel(app):
    with _panel("run", "Run", "mdi-play-circle-outline"):
        # eager: the live trial table stays in the page when Run collapses (Vuetify unmounts lazy panel content)
        with v.VExpansionPanelText(eager=True):
            with v.VRow(dense=True):
                with v.VCol(cols=6):
                    v.VBtn("Start search", click=app.start_search, color="primary", size="small", block=True,
                           id="start-search", disabled=("busy || !dataset",), prepend_icon="mdi-play")
                with v.VCol(cols=6):
                    v.VBtn("Cancel", click=app.cancel, color="error", size="small", block=True, id="cancel",
                           disabled=("!busy || run_state === 'cancelling'",), variant="tonal",
                           prepend_icon="mdi-stop")
            v.VProgressLinear(model_value=("run_progress",), height=14, color="primary", classes="mt-2",
                              id="run-progress", striped=("busy",), children=["{{ run_progress }} %"])
            with v.VTable(v_if=("trial_rows.length",), density="compact", classes="asg-table mt-2",
                          id="trial-table"):
                with html.Thead():
                    with html.Tr():
                        for head in ("Trial", "Parameters", "Value", "State"):
                            html.Th(head)
                with html.Tbody():
                    with html.Tr(v_for="row in trial_rows", key="row.trial", classes="trial-row"):
                        html.Td("{{ row.trial }}")
                        html.Td("{{ row.params }}", style="max-width: 200px; word-break: break-all;")
                        html.Td("{{ row.value }}")
                        html.Td("{{ row.state }}")
            html.Div("{{ run_log }}", v_if=("run_log",), classes="asg-log mt-2", id="run-log")


def _results_panel(app):
    with _panel("results", "Results", "mdi-trophy-outline"):
        with v.VExpansionPanelText():
            with v.VRow(dense=True, align="center"):
                with v.VCol(cols=8):
                    v.VTextField(label="Results folder (inside the work folder)", v_model=("model_text",),
                                 density="compact", hide_details=True, id="model-input")
                with v.VCol(cols=4):
                    v.VBtn("Open", click=(app.open_results, "[model_text]"), size="small", block=True, variant="tonal",
                           id="open-results", disabled=("busy",))
            with html.Div(v_if=("best_value !== null",), classes="asg-kv mt-2", id="best"):
                html.Div("Best Dice: <b id='best-value'>{{ best_value }}</b> · {{ results_name }}")
                with html.Div(v_for="p in best_dice", key="p.name"):
                    html.Span("Dice {{ p.name }}: {{ p.value }}")
                with html.Div(v_for="p in best_params", key="p.name"):
                    html.Span("{{ p.name }} = {{ p.value }}")
                html.A("Open report", href=("report_url",), target="_blank", v_if=("report_url",),
                       id="report-link")
            with v.VRow(dense=True, align="center", classes="mt-1"):
                with v.VCol(cols=8):
                    v.VSelect(label="Test-time flips", v_model=("apply_tta",), items=("tta_choices",),
                              density="compact", hide_details=True, id="apply-tta")
            with v.VRow(dense=True, align="center", classes="mt-1"):
                with v.VCol(cols=8):
                    v.VSelect(label="Apply to case", v_model=("apply_case",), items=("case_names",),
                              density="compact", hide_details=True, id="apply-case")
                with v.VCol(cols=4):
                    v.VBtn("Apply", click=app.apply, color="primary", size="small", block=True, id="apply",
                           disabled=("busy || best_value === null",))
