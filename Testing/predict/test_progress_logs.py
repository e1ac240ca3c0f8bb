"""Progress in a log: when stderr is not a terminal (``make demo > log``, CI), long commands print one plain line
per stage, per epoch, per finished trial and per few cases instead of rich bars, which draw nothing there; on a
terminal only the bars are drawn (never both)."""
from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

import pytest
import yaml

from conftest import DEMO, REPO, autoseg, autoseg_cmd

LINE = r"^\[\s*\d+ s\] "


@pytest.mark.slow
def test_train_log_has_a_line_per_epoch(tmp_path):
    sys.path.insert(0, str(REPO / "Testing"))
    from shared_data import make_subset

    data = make_subset(tmp_path / "data", 3, source=DEMO)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"network": {"depth": 3, "channels": 8, "n_convs": 1},
                                   "training": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 2,
                                                "val_every": 1}}))   # else planned from a timing (3 on a busy CI)
    r = autoseg("train", data, "--config", cfg, "--out", tmp_path / "m", "--val-fraction", "0.34")
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(LINE + r"train: started", r.stderr, re.M), r.stderr
    for epoch in (1, 2):
        assert re.search(LINE + rf"training: epoch {epoch}/2 loss \d+\.\d+ val Dice \d\.\d+", r.stderr, re.M), r.stderr
    assert "━" not in r.stderr                       # no bar drawn into the log


def test_on_a_terminal_only_the_bars_are_drawn_and_a_redirected_stdout_gets_the_lines(model, tmp_path):
    """stderr a real pseudo-terminal: the rich bar and none of the plain lines; stdout into a file (as in
    `make demo > log`): the plain lines and no bar."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("CI", None)
    log = open(tmp_path / "log", "w")
    proc = subprocess.Popen(autoseg_cmd("predict", model, DEMO / "imagesTr" / "hippocampus_003.nii.gz", "--out",
                                        tmp_path / "p"), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=slave, env=env)
    os.close(slave)
    log.close()
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:                              # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "predicting" in text and "━" in text, text[-2000:]
    assert not re.search(LINE, text, re.M), text[-2000:]
    logged = (tmp_path / "log").read_text(encoding="utf-8")          # the engine writes UTF-8 whatever the locale
    assert re.search(LINE + r"predicting: 1/1 cases done \(last: hippocampus_003\)", logged, re.M), logged
    assert "━" not in logged
    assert (tmp_path / "p" / "hippocampus_003.seg.nrrd").is_file()


def test_search_and_demo_events_become_one_line_per_trial_and_stage():
    """The events a search emits (runner, final training, prediction), as plain lines: a line per finished trial
    and per trial epoch (a search's log is never silent while its trials train), one per final-training epoch, one
    per stage."""
    from AutoSegCore.events import EventWriter
    from AutoSegCore.progress import plain_progress

    stream = io.StringIO()
    events = EventWriter(None)
    with plain_progress(events, stream):
        events.emit("log", message="demo: searching on 15 of the 20 cases")
        events.emit("study_started", study="study", storage="sqlite:///x/study.db")
        for t, value in ((0, 0.41), (1, None)):
            events.emit("trial_started", trial=t, params={})
            for e in (1, 2, 3):
                events.emit("epoch", trial=t, epoch=e, epochs=3, loss=1.0, val_dice=0.3, seconds=1.0)
            events.emit("trial_finished", trial=t, state="COMPLETE" if value else "PRUNED", value=value, params={})
            events.emit("progress", fraction=(t + 1) / 2, message=f"{t + 1} trials finished")
        events.emit("progress", fraction=0.0, message="final training top1 (1/1)")
        for e in (1, 2):
            events.emit("epoch", member=0, epoch=e, epochs=2, loss=0.5, val_dice=0.8, seconds=3.0)
        for i in range(1, 6):
            events.emit("progress", fraction=0.0, stage="checking", done=i, total=5, message=f"checked {i}/5 inputs")
        for i in range(1, 6):
            events.emit("progress", fraction=i / 5, stage="predicting", done=i, total=5, case=f"c{i}",
                        message=f"predicted c{i}")
    assert not events.listeners
    lines = [re.sub(LINE, "", line) for line in stream.getvalue().splitlines()]
    assert all(re.match(LINE, line) for line in stream.getvalue().splitlines())
    assert lines == [
        "demo: searching on 15 of the 20 cases",
        "search: started study",
        "search: trials running",
        *[f"search: trial 0: epoch {e}/3 loss 1.0000 val Dice 0.3000 (1 s)" for e in (1, 2, 3)],
        "search: trial 0 complete 0.4100 (1 finished)",
        *[f"search: trial 1: epoch {e}/3 loss 1.0000 val Dice 0.3000 (1 s)" for e in (1, 2, 3)],
        "search: trial 1 pruned – (2 finished)",
        "final training top1 (1/1)",
        "final training",
        "final training: epoch 1/2 loss 0.5000 val Dice 0.8000 (3 s)",
        "final training: epoch 2/2 loss 0.5000 val Dice 0.8000 (3 s)",
        "checked 5 input(s)",
        *[f"predicting: {i}/5 cases done (last: c{i})" for i in range(1, 6)],
    ]
