"""``build_report(DIR)``: the search's analysis (``summary.json``) and a self-contained ``report.html``.

Everything is computed first and written last, each file atomically, so a failure leaves no partial report.
A search without final training, predictions or per-epoch values still gets a report that says what is missing.
"""
from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path

from AutoSegCore.events import NULL_EVENTS, EventWriter
from AutoSegCore.report import html as H
from AutoSegCore.report import plots
from AutoSegCore.report.overlays import prediction_overlays
from AutoSegCore.report.workdir import open_search_folder
from AutoSegCore.report.analysis import json_safe, summarize
from AutoSegCore.search.search_dir import SearchDir
from AutoSegCore.utils.io import read_json, write_json, write_text


def build_summary(work_dir: str | Path, storage: str | None = None) -> dict:
    """The analysis of the search in ``work_dir`` as plain data (what ``summary.json`` holds), nothing written."""
    from AutoSegCore.search.storage import redact

    folder = open_search_folder(work_dir, storage)
    summary = summarize(folder.study, folder.path)
    summary.update(work_dir=str(Path(work_dir).resolve()), storage=redact(folder.storage_url),
                   data=folder.settings.get("data"), generated=time.strftime("%Y-%m-%d %H:%M:%S"),
                   search={k: folder.settings.get(k) for k in ("space", "strategy", "proxy_data", "proxy_net",
                                                               "trials", "time_limit", "jobs", "epochs",
                                                               "min_epochs", "seed") if k in folder.settings})
    forecast = SearchDir(work_dir).forecast       # search/forecast.py: written before the first trial
    if forecast.is_file():
        f = json.loads(forecast.read_text())
        summary["forecast"] = {k: f.get(k) for k in ("search_seconds", "final_seconds", "trials", "trial_seconds",
                                                    "text", "actual", "final_winner")}
    summary["_folder"] = folder
    return summary


def build_report(work_dir: str | Path, events: EventWriter = NULL_EVENTS, *,
                 storage: str | None = None) -> tuple[Path, Path]:
    """Write ``work_dir/report.html`` and ``work_dir/summary.json``; returns their paths.  ``storage``: the
    study's URL with its password, which search.json does not hold (see ``workdir.open_search_folder``).

    Raises ``ConfigError`` (no/invalid ``search.json``) or ``StorageError`` (study missing, unreachable or
    corrupt) before anything is written.
    """
    work = Path(work_dir)
    summary = build_summary(work, storage)
    folder = summary.pop("_folder")
    study = folder.study
    events.emit("progress", fraction=0.2, message="analysis done; drawing plots")
    overlays, overlay_note = prediction_overlays(work, folder.settings.get("data"))
    summary["predictions"] = {"cases": [n for n, _ in overlays], "note": overlay_note}
    images = {
        "convergence": plots.plot_convergence(summary),
        "curves": plots.plot_learning_curves(study),
        "tau": plots.plot_tau(summary),
        "slices": plots.plot_slices(study),
        "importance": plots.plot_importance(summary),
        "pareto": plots.plot_pareto(study, summary),
        "proxy_vs_full": plots.plot_proxy_vs_full(summary),
    }
    images["per_class"], per_class_source = plots.plot_per_class(summary)
    summary["plots"] = sorted(k for k, v in images.items() if v) + (["overlays"] if overlays else [])
    summary = json_safe(summary)
    page = render(summary, images, per_class_source, overlays)
    events.emit("progress", fraction=0.9, message="writing report")
    folder_paths = SearchDir(work)
    run = read_json(folder_paths.summary) if folder_paths.summary.is_file() else {}    # the run's own, if any
    summary_path = write_json(folder_paths.summary, {**(run if isinstance(run, dict) else {}), **summary})
    html_path = write_text(folder_paths.report, page)
    events.emit("artifact", kind="report", path=str(html_path))
    events.emit("artifact", kind="summary", path=str(summary_path))
    return html_path, summary_path


# ------------------------------------------------------------------------------------------------ rendering
def render(s: dict, images: dict, per_class_source: str, overlays: list[tuple[str, str]]) -> str:
    multi = len(s["directions"]) > 1
    sections = [_overview(s), _forecast(s), _best(s, multi), _final(s, images, per_class_source), _convergence(s, images),
                _tau(s, images), _params(s, images), _pareto(s, images, multi), _overlays(s, overlays),
                _failures(s), _dashboard(s)]
    fid = f"data {s.get('proxy_data') or 'full'}, network {s.get('proxy_net') or 'full'}"
    subtitle = (f"space <b>{H.fmt(s.get('space'))}</b> · strategy <b>{H.fmt(s.get('strategy'))}</b> · "
                f"search fidelity: {escape(fid)} · generated {escape(s['generated'])}")
    return H.page(f"AutoSegSearch report — {s['study']}", subtitle, [x for x in sections if x])


def _overview(s: dict) -> str:
    c = s["counts"]
    rows = [("trials", s["n_trials"]), ("complete", c.get("COMPLETE", 0)), ("pruned", c.get("PRUNED", 0)),
            ("failed", c.get("FAIL", 0) - c.get("REQUEUED", 0)), ("stopped and re-queued", c.get("REQUEUED", 0)),
            ("running / waiting", c.get("RUNNING", 0) + c.get("WAITING", 0)),
            ("epochs trained (all trials)", s["total_epochs"]),
            ("trial compute time", H.Raw(H.duration(s["total_trial_seconds"]))),
            ("search wall-clock", H.Raw(H.duration(s["elapsed_seconds"]))),
            ("final training", H.Raw(H.duration((s.get("final") or {}).get("seconds")))),
            ("objectives", ", ".join(s["directions"])), ("dataset", s.get("data") or "–")]
    missing = "".join(H.note(m) for m in s.get("missing", []))
    return H.section("Overview", H.table(["", "value"], rows, numeric=[1]) + missing, "overview")


def _forecast(s: dict) -> str:
    """The cost forecast made before the first trial next to the measured wall-clock (ratio actual / forecast)."""
    f = s.get("forecast")
    if not f:
        return ""
    actual = f.get("actual") or {}
    rows = [(phase, H.Raw(H.duration(f.get(f"{key}_seconds"))), H.Raw(H.duration(actual.get(f"{key}_seconds"))),
             actual.get(f"{key}_ratio")) for phase, key in (("search phase", "search"), ("final training", "final"))]
    winner = f.get("final_winner") or {}
    if winner.get("seconds"):     # forecast again once the search had its winner, from the winner's own net
        rows.append((f"final training (trial {winner.get('trial')}'s net, after the search)",
                     H.Raw(H.duration(winner["seconds"])), H.Raw(H.duration(actual.get("final_seconds"))),
                     actual.get("final_winner_ratio")))
    body = H.table(["", "forecast", "actual", "actual / forecast"], rows, numeric=[3]) + H.note(f.get("text"))
    return H.section("Cost forecast", body, "forecast")


def _best(s: dict, multi: bool) -> str:
    b = s.get("best")
    if not b:
        return H.section("Best configuration", H.note("no completed trial yet"), "best")
    rows = [(k, v) for k, v in b["params"].items()]
    trial = f"#{b['number']}" + (" — the planned recipe (the search's first trial)" if b.get("planned") else "")
    info = [("trial", trial), ("chosen by", b["chosen_by"]),
            ("objective value(s)" if multi else "objective value", b["values"] if multi else b["value"]),
            ("validation Dice (search fidelity)", b.get("val_dice")), ("parameters", b.get("num_params")),
            ("epochs", b.get("epochs")), ("trial time", H.Raw(H.duration(b.get("seconds")))),
            ("fidelity", b.get("fidelity"))]
    per = b.get("val_dice_per_class") or {}
    body = (H.table(["", "value"], info) + "<h3>Parameters</h3>" + H.table(["parameter", "value"], rows) +
            (H.table(["class", "Dice (search fidelity)"], list(per.items()), numeric=[1]) if per else ""))
    if b.get("config"):
        body += ("<details><summary>full experiment configuration (JSON)</summary><pre>" +
                 escape(json.dumps(b["config"], indent=2)) + "</pre></details>")
    return H.section("Best configuration", body, "best")


def _tta_text(final: dict) -> str:
    """'on'/'off', and the validation Dice of each way when both were measured (--final-tta auto)."""
    if "tta" not in final:
        return "off"                              # finals written before TTA was decided
    tried = final.get("tta_val_dice") or {}
    detail = ", ".join(f"{k} {v:.4f}" for k, v in sorted(tried.items())) if len(tried) > 1 else ""
    return ("on" if final["tta"] else "off") + (f" (validation Dice {detail})" if detail else "")


def _final(s: dict, images: dict, source: str) -> str:
    f = s.get("final")
    body = ""
    if f and f.get("ensemble"):
        e = f["ensemble"]
        body += H.table(["", "value"], [("validation Dice (mean foreground)", e.get("val_dice")),
                                        ("largest-component post-processing on labels", f.get("largest_component")),
                                        ("flip test-time augmentation", _tta_text(f)),
                                        ("model folder", f.get("best") or "best/")])
        members = f.get("members") or []
        if members:
            body += "<h3>Members</h3>" + H.table(
                ["trial", "tag", "search Dice (proxy fidelity)", "final Dice (full fidelity)", "time"],
                [(m.get("trial"), m.get("tag"), m.get("proxy_val_dice"), m.get("full_val_dice"),
                  H.Raw(H.duration(m.get("seconds")))) for m in members], numeric=[2, 3])
    else:
        body += H.note("no final training found (final/final.json missing): the numbers below are the best "
                       "search trial's, at search fidelity")
    if images.get("per_class"):
        body += f"<p class='muted'>Per-class Dice — {escape(source)}</p>" + H.img(images["per_class"], "per-class Dice")
    pvf = s["proxy_vs_full"]
    body += "<h3>Search fidelity vs full fidelity</h3>"
    if pvf["pearson_r"] is not None:
        body += H.table(["pairs", "Pearson r", "p", "Spearman ρ", "p"],
                        [(pvf["n"], pvf["pearson_r"], pvf["pearson_p"], pvf["spearman_r"], pvf["spearman_p"])],
                        numeric=[0, 1, 2, 3, 4])
    body += H.note(pvf.get("note")) + H.img(images.get("proxy_vs_full"), "proxy-fidelity vs full Dice")
    return H.section("Final model", body, "final")


def _convergence(s: dict, images: dict) -> str:
    body = ""
    if images.get("convergence"):
        body += H.img(images["convergence"], "convergence")
    else:
        body += H.note("no completed trial to plot")
    if images.get("curves"):
        body += "<h3>Learning curves</h3>" + H.img(images["curves"], "learning curves")
    return H.section("Convergence", body, "convergence")


def _tau(s: dict, images: dict) -> str:
    rows = s["kendall_tau"]
    if not rows:
        return H.section("Early vs final ranking (Kendall τ)",
                         H.note("needs at least 3 completed trials with per-epoch validation Dice"), "tau")
    body = ("<p class='muted'>Does the ranking of trials after a few epochs predict their final ranking? "
            "(the BOHB thesis §3.4.2; z from its Eq. 3.1, significant when z &gt; 1.96 — valid for N &gt; 10). "
            "A high τ early is what makes pruning and Hyperband/BOHB budgets trustworthy.</p>")
    body += H.img(images.get("tau"), "Kendall tau over epochs")
    body += H.table(["epoch", "trials N", "τ", "z (Eq. 3.1)", "p (z)", "significant"],
                    [(r["epoch"], r["n"], r["tau"], r["z"], r["p_z"],
                      H.Raw("<span class=sig>yes</span>" if r["significant"] else "no")) for r in rows],
                    numeric=[1, 2, 3, 4])
    return H.section("Early vs final ranking (Kendall τ)", body, "tau")


def _params(s: dict, images: dict) -> str:
    body = ""
    if images.get("slices"):
        body += "<h3>Slice plots</h3>" + H.img(images["slices"], "parameter slice plots")
    imp = s["importance"]
    body += "<h3>Parameter importance</h3>" + (H.img(images.get("importance"), "importance") or "") + H.note(imp.get("note"))
    if s["anova"]:
        body += ("<h3>One-way ANOVA per parameter (Bonferroni)</h3><p class='muted'>Completed trials grouped by the "
                 "parameter's value (numbers in quantile bins); BOHB thesis §3.3.2. "
                 "Significant: corrected p &lt; 0.05.</p>")
        body += H.table(["parameter", "groups (n, mean Dice)", "F", "p", "p Bonferroni", "significant"],
                        [(r["param"], H.Raw("<br>".join(f"{escape(g['label'])}: n={g['n']}, {H.fmt(g['mean'])}"
                                                        for g in r["groups"])), r["F"], r["p"], r["p_bonferroni"],
                          H.Raw("<span class=sig>yes</span>" if r["significant"] else escape(r["note"] or "no")))
                         for r in s["anova"]], numeric=[2, 3, 4])
    return H.section("Hyper-parameters", body, "params")


def _pareto(s: dict, images: dict, multi: bool) -> str:
    if not multi:
        return ""
    front = s["pareto_front"]
    body = H.img(images.get("pareto"), "Pareto front") + H.table(
        ["trial", "objectives", "validation Dice", "parameters (count)", "configuration"],
        [(f"#{p['trial']}", p["values"], p.get("val_dice"), p.get("num_params"), p["params"]) for p in front],
        numeric=[2, 3])
    return H.section("Pareto front", body if front else H.note("no completed trial yet"), "pareto")


def _overlays(s: dict, overlays: list[tuple[str, str]]) -> str:
    body = "".join(f"{H.img(uri, f'prediction overlay {name}')}" for name, uri in overlays)
    body += H.note(s["predictions"].get("note"))
    return H.section("Predictions on validation cases", body, "predictions")


def _failures(s: dict) -> str:
    if not s["failures"]:
        return ""
    # trials the runner stopped and queued again (Ctrl-C, --time, a dead worker) are listed too, named as such
    title = "Failed or stopped trials" if s["counts"].get("REQUEUED") else "Failed trials"
    return H.section(title, H.table(["trial", "reason"], [(f"#{f['trial']}", f["error"]) for f in s["failures"]]),
                     "failures")


def _dashboard(s: dict) -> str:
    url = s["storage"]
    body = (f"<p>Explore every trial interactively with optuna-dashboard:</p><pre>optuna-dashboard {escape(url)}</pre>"
            f"<p class='muted'>Study name: <code>{escape(s['study'])}</code>. The full analysis is in "
            f"<code>summary.json</code> next to this file.</p>")
    if ":***@" in url or "=***" in url:        # the password is never stored: the user supplies it again
        body += ("<p class='muted'>The password is not stored: put it in place of <code>***</code>, or leave it "
                 "out and set <code>PGPASSWORD</code> or <code>~/.pgpass</code>.</p>")
    return H.section("Open the study", body, "dashboard")
