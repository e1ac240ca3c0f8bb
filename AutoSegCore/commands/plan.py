"""`autoseg plan DATA [--device D] [--budget T] [--out DIR]` → planning.plan_dataset: the dataset's plan with a
why for each choice, written as DIR/plan.json."""
from __future__ import annotations

from AutoSegCore.utils.cli_types import add_events_option
from AutoSegCore.utils.durations import format_duration
from AutoSegCore.utils.cli_types import device, positive_float


def register(sub) -> None:
    p = sub.add_parser("plan", help="plan a dataset: spacing, network shape, patch, batch, epochs, normalisation",
                       description="Compute the dataset's fingerprint and plan its training from it, as nnU-Net "
                                   "plans: target spacing, per-axis poolings and kernels, patch and batch sized for "
                                   "the device (a CPU: a few timed training steps; a GPU: activation memory), epochs "
                                   "for the budget, normalisation by modality.  Prints each choice with its reason; "
                                   "`autoseg train DATA` trains this plan.")
    p.add_argument("data", help="dataset folder (MSD or nnU-Net raw layout)")
    p.add_argument("--device", type=device, default="auto",
                   help="auto | cpu | cuda | cuda:N: the device the plan is for (cuda may be planned without one)")
    p.add_argument("--budget", help="training time the plan is sized for, e.g. 20m or 1h (default: 20m on a CPU, "
                                    "1h on a GPU)")
    p.add_argument("--gpu-memory", type=positive_float, metavar="GB",
                   help="GPU memory to plan for (default: the GPU's, or nnU-Net's 8 GB without one)")
    p.add_argument("--out", help="folder to write plan.json into")
    add_events_option(p)
    p.set_defaults(func=run)


def plan_table(plan: dict):
    """The plan's choices as a rich table (what the CLI prints and the front ends show)."""
    from rich.table import Table

    fp = plan["fingerprint_summary"]
    t = Table(title=f"plan for {plan['dataset']} — {fp['num_cases']} case(s), {fp['modality']}, on "
                    f"{plan['device']}, budget {format_duration(plan['budget_seconds'])}", show_lines=False)
    t.add_column("choice")
    t.add_column("value")
    t.add_column("why")
    for name, choice in plan["choices"].items():
        t.add_row(name, _show(choice["value"]), choice["why"])
    return t


def print_plan(plan: dict) -> None:
    """The plan as a table on a terminal, as plain ``plan: choice value — why`` lines in a log (no box drawing)."""
    from AutoSegCore.progress import console, on_terminal

    if on_terminal():
        console.print(plan_table(plan))
        return
    console.print(f"plan for {plan['dataset']} on {plan['device']}, budget {format_duration(plan['budget_seconds'])}",
                  markup=False, highlight=False, soft_wrap=True)
    for name, choice in plan["choices"].items():
        console.print(f"plan: {name} {_show(choice['value'])} — {choice['why']}", markup=False, highlight=False,
                      soft_wrap=True)


def _show(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list) and value and isinstance(value[0], list):
        return " ".join("×".join(map(str, v)) for v in value)
    if isinstance(value, list):
        return "×".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def run(args, events) -> int:
    from pathlib import Path

    from AutoSegCore.planning import PLAN_FILE, plan_dataset, save_plan
    from AutoSegCore.utils.io import check_output_file
    from AutoSegCore.progress import console

    if args.out:
        check_output_file(Path(args.out) / PLAN_FILE)
    events.emit("study_started", kind="plan", data=str(args.data))
    plan = plan_dataset(args.data, device=args.device, budget=args.budget, gpu_memory_gb=args.gpu_memory)
    print_plan(plan)
    events.emit("plan", plan=plan)
    if args.out:
        path = save_plan(plan, Path(args.out) / PLAN_FILE)
        console.print(f"plan written to {path}", markup=False)
        events.emit("artifact", kind="plan", path=str(path))
    events.emit("done", command="plan", dataset=plan["dataset"])
    return 0
