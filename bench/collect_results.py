"""Gather the latest output of every bench script (bench/results/*.txt) into docs/benchmarks.md."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["train_throughput", "proxy_selection", "strategies", "search_speedup", "budget_accuracy", "budget_accuracy_all",
         "capacity_pilot"]
TITLES = {
    "train_throughput": "Trainer throughput vs a lean MONAI loop (issue 3) — `bench/train_throughput.py`",
    "proxy_selection": "All-pairs MI and local NCC on 182 Hippocampus cases (issue 4) — `bench/proxy_selection.py`",
    "strategies": "Search strategies against their references (issue 5) — `bench/strategies.py`",
    "search_speedup": "Proxy search vs full search (issue 6) — `bench/search_speedup.py`",
    "budget_accuracy": "Search within a wall-clock budget vs a strong fixed recipe (issue 6) — `bench/budget_accuracy_v1.py`",
    "budget_accuracy_all": "The same, final trainings on all 152 pool cases (`--final-data all`) — "
                           "`bench/budget_accuracy_v1.py`",
    "capacity_pilot": "Capacity per CPU-second at the final scale (issue 6, an experiment) — `bench/capacity_pilot.py`",
    **{f"budget_accuracy_{d}_compare": f"The search vs the planned recipe vs nnU-Net v2 at equal wall-clock, {d} "
                                       "(issue 32) — `bench/budget_accuracy.py`"
       for d in ("Task04_Hippocampus", "Prostate_PROMISE12")},
}


def main() -> None:
    results = ROOT / "bench" / "results"
    names = [n for n in ORDER if (results / f"{n}.txt").exists()]
    names += sorted(p.stem for p in results.glob("*.txt") if p.stem not in ORDER)
    parts = ["# Benchmarks\n",
             "Each section is the latest output of the named script, run on this project's 2-core CPU machine "
             "(no GPU). Every script measures its reference in the same run and prints the ratio; absolute "
             "numbers depend on the machine's load, which each script prints. Regenerate this page with "
             "`python bench/collect_results.py` after running a bench.\n"]
    for n in names:
        parts.append(f"## {TITLES.get(n, n)}\n\n```text\n{(results / f'{n}.txt').read_text().rstrip()}\n```\n")
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
