"""`autoseg doctor [--json]` in a child process, as a user runs it after installing: what it reports is what
torch and the engine's device choice say in this interpreter (a CPU here; on a GPU machine every GPU)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import torch

from AutoSegCore.doctor import CUDA_AMP_AUTO
from AutoSegCore.utils.device import pick_device
from shared_data import REPO


def _doctor(*args: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-m", "AutoSegCore", "doctor", *args], capture_output=True, text=True,
                         cwd=REPO, timeout=300, env=dict(os.environ, **env))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_doctor_json_is_the_machine_as_torch_sees_it():
    report = json.loads(_doctor("--json", CUDA_MPS_PIPE_DIRECTORY="/tmp/autoseg-test-mps"))
    assert report["python"] == platform.python_version()
    assert (report["torch"], report["torch_cuda"]) == (torch.__version__, torch.version.cuda)
    assert report["cuda_available"] == torch.cuda.is_available()
    assert report["device_auto"] == str(pick_device("auto"))
    assert report["mps_active"] is True
    assert len(report["gpus"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for i, gpu in enumerate(report["gpus"]):
        assert gpu["index"] == i and gpu["name"] == torch.cuda.get_device_name(i)
        assert 0 < gpu["free_memory_gb"] <= gpu["total_memory_gb"]
        assert gpu["compute_capability"] == "{}.{}".format(*torch.cuda.get_device_capability(i))
        assert gpu["bf16"] == (torch.cuda.get_device_capability(i) >= (8, 0))
    if report["device_auto"] == "cpu":
        native = torch.cpu._is_avx512_bf16_supported()
        assert report["cpu_bf16_native"] == native and report["amp_auto"].startswith("bf16" if native else "fp32")
    else:
        assert report["amp_auto"] == CUDA_AMP_AUTO
    assert report["threads"] >= 1 and report["cpu_count"] == os.cpu_count()


def test_doctor_prints_one_line_per_fact():
    text = _doctor()
    for field in ("python", "torch", "CUDA available", "CUDA MPS", "--device auto", "training.amp: auto", "threads"):
        assert any(line.startswith(field) for line in text.splitlines()), (field, text)
    assert torch.__version__ in text and str(pick_device("auto")) in text
    assert ("CUDA build" if torch.version.cuda else "CPU build") in text
    if torch.cuda.is_available():
        assert all(f"GPU {i}" in text for i in range(torch.cuda.device_count()))
