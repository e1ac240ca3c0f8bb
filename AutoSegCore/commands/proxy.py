"""`autoseg proxy DATA --method mi|ncc|random --roi label|none --budget 10|0.25 --out DIR [--preview]`.

A thin wrapper over ``AutoSegCore.proxy.select_proxy_data`` / ``save_proxy`` / ``render_preview``: writes
DIR/proxy.json (and DIR/proxy_preview.png with ``--preview``).
"""
from __future__ import annotations

import sys

from AutoSegCore.utils.cli_types import add_events_option
from AutoSegCore.proxy.fidelity import SELECTION_METHODS
from AutoSegCore.utils.cli_types import device
from AutoSegCore.utils.folder_lock import add_private_option


def register(sub) -> None:
    p = sub.add_parser("proxy", help="choose a small, diverse proxy subset of a dataset (the proxy paper: MI / local NCC)")
    p.add_argument("data", help="dataset folder (MSD or nnU-Net raw layout)")
    p.add_argument("--method", choices=SELECTION_METHODS, default="mi",
                   help="mi = mutual information, ncc = local normalised cross-correlation (9³), random = baseline")
    p.add_argument("--roi", choices=("label", "none"), default="label",
                   help="label = compare the labels' bounding boxes (+margin); none = whole images")
    p.add_argument("--budget", default="10", help="number of cases (e.g. 10) or fraction of the dataset (e.g. 0.25)")
    p.add_argument("--out", required=True, help="output folder for proxy.json (and proxy_preview.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline and the train/val split")
    p.add_argument("--val-fraction", type=float, default=0.5, help="share of the selection used for validation")
    p.add_argument("--size", type=int, default=64, help="edge of the cube every case is resampled to")
    p.add_argument("--cache-dir", default=None, help="where pairwise matrices are cached (default ~/.cache/autoseg/proxy)")
    p.add_argument("--device", type=device, default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--preview", action="store_true", help="also write proxy_preview.png (montage of the selection)")
    add_private_option(p)
    add_events_option(p)
    p.set_defaults(func=run)


def run(args, events) -> int:
    from AutoSegCore.utils.folder_lock import command_output

    with command_output(args, args.out, events):           # one run per folder: a second refuses at once
        return _run(args, events)


def _run(args, events) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from AutoSegCore.proxy import render_preview, save_proxy, select_proxy_data

    console = Console(file=sys.stderr if events.to_stdout else sys.stdout)
    selection = select_proxy_data(args.data, method=args.method, roi=args.roi, budget=args.budget, seed=args.seed,
                                  size=args.size, val_fraction=args.val_fraction, cache_dir=args.cache_dir,
                                  device=args.device, events=events, show_progress=console.is_terminal)
    out = Path(args.out)
    if args.preview:
        png = render_preview(selection, args.data, out / "proxy_preview.png")
        events.emit("artifact", kind="proxy_preview", path=png)
    path = save_proxy(selection, out)
    events.emit("artifact", kind="proxy", path=path)
    table = Table(title=f"proxy data: {selection.method}, roi={selection.roi}, "
                        f"{selection.budget} of {len(selection.cases)} cases ({selection.seconds:.1f} s)")
    for col in ("rank", "case", "score", "split"):
        table.add_column(col)
    for name in selection.selected:
        score = selection.scores.get(name)
        table.add_row(str(selection.ranks.get(name) or "–"), name, "–" if score is None else f"{score:.4f}",
                      "val" if name in selection.val else "train")
    console.print(table)
    console.print(f"wrote {path}")
    events.emit("done", selected=selection.selected, train=selection.train, val=selection.val, path=path)
    return 0
