"""README's examples are runnable: the Python block runs as written; the CLI block's single-shot commands run."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from shared_data import REPO

pytestmark = pytest.mark.slow
README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _workdir(tmp_path):
    (tmp_path / "Resources").symlink_to(REPO / "Resources")
    return tmp_path


def test_readme_python_block_runs(tmp_path):
    code = _blocks("python")[0]
    env = dict(os.environ, AUTOSEG_THREADS="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], cwd=_workdir(tmp_path), capture_output=True, text=True,
                       timeout=1200, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "out" / "study" / "report.html").is_file()
    assert (tmp_path / "out" / "pred").is_dir()


def test_readme_cli_commands_run(tmp_path):
    block = next(b for b in _blocks("bash") if "autoseg validate" in b)
    block = block.replace("\\\n", " ")                      # join shell line continuations
    commands = [ln.split("  #")[0].strip() for ln in block.splitlines() if ln.startswith("autoseg ")]
    single_shot = ("choices", "validate", "fingerprint", "plan", "train", "proxy", "predict", "evaluate")
    env = dict(os.environ, AUTOSEG_THREADS="1", OMP_NUM_THREADS="1", D="Resources/DemoData/Hippocampus")
    cwd = _workdir(tmp_path)
    ran = []
    for cmd in commands:
        words = shlex.split(cmd.replace("$D", env["D"]))
        if words[1] not in single_shot:
            continue
        r = subprocess.run([sys.executable, "-m", "AutoSegCore", *words[1:]], cwd=cwd, capture_output=True,
                           text=True, timeout=900, env=env)
        assert r.returncode == 0, (cmd, r.stderr[-2000:])
        ran.append(words[1])
    assert list(dict.fromkeys(ran)) == list(single_shot)
    assert (tmp_path / "proxy" / "proxy_preview.png").is_file() and (tmp_path / "metrics.json").is_file()
    assert (tmp_path / "plan" / "plan.json").is_file() and (tmp_path / "planned" / "plan.json").is_file()
    timed = json.loads((tmp_path / "model20s" / "history.json").read_text())      # `train --time 20s`
    assert timed[-1]["horizon"] == timed[-1]["epoch"] or sum(r["seconds"] for r in timed) >= 15
