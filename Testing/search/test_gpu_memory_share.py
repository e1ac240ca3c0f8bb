"""Trials packed per GPU, honestly (issue 29): the search process's own GPU memory (its CUDA context, what it
cached for the plan's probe, proxy selection and the forecast) comes off the trials' shares; ``--trial-memory-gb``
caps a CUDA trial's GPU memory instead of its address space (RLIMIT_AS breaks CUDA's start-up); CUDA MPS is
detected and reported when trials share a GPU.  All on the CPU: the arithmetic through pure functions, the
torch.cuda calls through stand-ins, RLIMIT_AS in a real child process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import AutoSegCore.utils.device as device_mod
from AutoSegCore.errors import AutoSegError
from AutoSegCore.events import EventWriter
from AutoSegCore.search.trial_process import memory_limits
from AutoSegCore.search.trial_spec import TrialSpec
from AutoSegCore.utils.device import (CUDA_CONTEXT_BYTES, MPS_PIPE_ENV, GpuMemoryCap, apply_memory_cap,
                                      describe_gpu_sharing, memory_fraction, mps_pipe_directory, parent_held_bytes,
                                      release_parent_memory)

GiB = 2 ** 30
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_gpus(monkeypatch):
    """torch.cuda as seen by a search process that ran the forecast on cuda:0 of two 80 GiB GPUs (2 GiB still
    cached): calls are recorded, nothing reaches a driver."""
    calls: list = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 2 * GiB if i == 0 else 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=80 * GiB))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d: calls.append((f, d)))
    monkeypatch.setattr(torch._C, "_cuda_hasPrimaryContext", lambda i: i == 0, raising=False)
    return calls


def _runner(tmp_path, **kw):
    """A runner and the messages of its ``log`` events."""
    from AutoSegCore.search.runner import SearchRunner
    from AutoSegCore.search.settings import SearchSettings

    log: list[str] = []
    events = EventWriter(None)
    events.listeners.append(lambda e: log.append(e["message"]) if e["event"] == "log" else None)
    runner = SearchRunner(SearchSettings(data=str(tmp_path), out=str(tmp_path / "out"), space="unet-pipeline",
                                         strategy="random", trials=2, **kw), events)
    return runner, log


def test_trials_share_what_the_search_process_leaves_of_a_gpu():
    """Each trial's fraction = (MEMORY_HEADROOM − the parent's share) / trials on the GPU."""
    assert memory_fraction(["cuda:0"], 4, "cuda:0") == pytest.approx(0.225)                  # parent holds nothing
    assert memory_fraction(["cuda:0"], 4, "cuda:0", 8 * GiB, 80 * GiB) == pytest.approx(0.2)  # (0.9 − 0.1) / 4
    assert memory_fraction(["cuda:0", "cuda:1"], 4, "cuda:1", 8 * GiB, 80 * GiB) == pytest.approx(0.4)
    assert memory_fraction(["cuda:0"], 1, "cuda:0", 8 * GiB, 80 * GiB) is None                # a GPU to itself
    assert memory_fraction(["cpu"], 4, "cpu", 8 * GiB, 80 * GiB) is None
    with pytest.raises(AutoSegError, match="keeps 95% of cuda:0"):
        memory_fraction(["cuda:0"], 2, "cuda:0", 76 * GiB, 80 * GiB)
    assert parent_held_bytes(3 * GiB, True) == 3 * GiB + CUDA_CONTEXT_BYTES                  # context counted
    assert parent_held_bytes(0, False) == 0


def test_the_search_process_frees_its_cache_and_measures_what_it_keeps(fake_gpus):
    assert release_parent_memory(["cuda:0", "cuda:1", "cpu"]) == {"cuda:0": (2 * GiB + CUDA_CONTEXT_BYTES, 80 * GiB)}
    assert fake_gpus == ["empty_cache"]                     # freed before measuring; cuda:1 has no context


def test_a_search_process_without_cuda_neither_imports_nor_initialises_it():
    code = ("import sys; from AutoSegCore.utils.device import release_parent_memory; "
            "print(release_parent_memory(['cuda:0']), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         cwd=REPO)
    assert out.stdout.split() == ["{}", "False"]
    assert release_parent_memory(["cuda:0"]) == {}           # torch imported here, CUDA never initialised


def test_the_runner_takes_its_own_share_off_before_the_first_trial(tmp_path, fake_gpus, monkeypatch):
    monkeypatch.setenv(MPS_PIPE_ENV, str(tmp_path / "no-mps"))
    monkeypatch.setattr(device_mod, "MPS_DEFAULT_PIPE", str(tmp_path / "no-mps"))
    monkeypatch.setattr(device_mod, "parse_devices", lambda text, gpus=None: ["cuda:0"])     # one (stand-in) GPU
    runner, log = _runner(tmp_path, jobs=4, devices="cuda:0")
    runner.release_parent_gpu()
    assert fake_gpus == ["empty_cache"]
    assert runner.parent_gpu == {"cuda:0": (2 * GiB + CUDA_CONTEXT_BYTES, 80 * GiB)}
    assert runner._trial_device(["cuda:0"]) == ("cuda:0", round((0.9 - 2.5 / 80) / 4, 4))
    assert len(log) == 1 and "up to 4 trials share cuda:0 without MPS (time-sliced" in log[0]
    assert "keeps 2.50 GiB" in log[0]


def test_a_cpu_search_logs_nothing_about_gpus(tmp_path):
    runner, log = _runner(tmp_path, jobs=4, device="cpu")
    runner.release_parent_gpu()
    assert log == [] and runner.parent_gpu == {} and runner._trial_device([]) == ("cpu", None)


def test_cuda_mps_is_detected_and_reported(tmp_path, monkeypatch):
    pipe = tmp_path / "mps"
    pipe.mkdir()
    assert mps_pipe_directory({MPS_PIPE_ENV: str(pipe)}) == str(pipe)
    assert mps_pipe_directory({MPS_PIPE_ENV: str(tmp_path / "missing")}) is None       # no daemon made it
    monkeypatch.setattr(device_mod, "MPS_DEFAULT_PIPE", str(pipe))
    assert mps_pipe_directory({}) == str(pipe)                                           # /tmp/nvidia-mps
    monkeypatch.setattr(device_mod, "MPS_DEFAULT_PIPE", str(tmp_path / "missing"))
    assert mps_pipe_directory({}) is None
    parent = {"cuda:0": (8 * GiB, 80 * GiB)}
    line = describe_gpu_sharing(["cuda:0"], 4, parent, str(pipe))
    assert line.startswith(f"up to 4 trials share cuda:0 through CUDA MPS (pipe directory {pipe})")
    assert "cuda:0: the search process keeps 8.00 GiB, each trial's cap is 20.0%" in line
    assert "nvidia-cuda-mps-control -d" in describe_gpu_sharing(["cuda:0"], 4, parent, None)
    assert describe_gpu_sharing(["cuda:0"], 1, parent, str(pipe)) is None               # nothing packed
    assert describe_gpu_sharing(["cpu"], 4, {}, str(pipe)) is None


def test_trial_memory_gb_caps_gpu_memory_on_cuda_and_the_address_space_on_the_cpu():
    """The decision: RLIMIT_AS only on the CPU; on a GPU the limit is a cap of its memory, handed to train_model."""
    assert memory_limits(True, 8, 0.45) == (None, GpuMemoryCap(share=0.45, gigabytes=8))
    assert memory_limits(True, None, 0.45) == (None, GpuMemoryCap(share=0.45))
    assert memory_limits(True, None, None) == (None, None)
    assert memory_limits(False, 8, None) == (8 * GiB, None)
    assert memory_limits(False, None, None) == (None, None)
    assert GpuMemoryCap(0.45, 8).fraction(80 * GiB) == pytest.approx(0.1)       # the smaller: 8 GiB of 80
    assert GpuMemoryCap(0.05, 8).fraction(80 * GiB) == pytest.approx(0.05)      # the smaller: its share
    assert GpuMemoryCap(None, 200).fraction(80 * GiB) == 1.0                    # at most the whole GPU


def test_the_smaller_cap_is_applied_on_a_gpu_and_nothing_on_the_cpu(fake_gpus):
    gpu = torch.device("cuda", 0)
    assert apply_memory_cap(torch.device("cpu"), GpuMemoryCap(0.45, 8)) is None
    assert apply_memory_cap(gpu, GpuMemoryCap(0.45, 8)) == pytest.approx(0.1)
    assert fake_gpus == [(pytest.approx(0.1), gpu)]
    assert apply_memory_cap(gpu, GpuMemoryCap(gigabytes=8)) == pytest.approx(0.1)  # --trial-memory-gb alone caps too
    assert apply_memory_cap(gpu, None) is None and apply_memory_cap(gpu, GpuMemoryCap()) is None
    assert len(fake_gpus) == 2


CHILD = r"""
import json, os, resource, sys
from AutoSegCore.search.trial_process import limit_memory
from AutoSegCore.search.trial_spec import TrialSpec
before = resource.getrlimit(resource.RLIMIT_AS)
cap = limit_memory(TrialSpec.read(sys.argv[1]))
print(json.dumps({"before": before, "after": resource.getrlimit(resource.RLIMIT_AS),
                  "cap": cap and [cap.share, cap.gigabytes], "env": sorted(os.environ)}))
"""


def _child_limits(tmp_path, device: str, memory_gb: float, fraction: float | None = None) -> dict:
    """A trial process's memory set-up, run for real in a child (RLIMIT_AS cannot be undone in this one)."""
    trial_dir = tmp_path / device.replace(":", "_")
    trial_dir.mkdir()
    TrialSpec(number=0, trial_id=1, storage="sqlite:///s.db", study_name="s", strategy="random",
              directions=["maximize"], data="/d", config={"training": {"epochs": 1}}, train_cases=["a"], val_cases=[],
              min_epochs=1, threads=1, device=device, memory_gb=memory_gb, memory_fraction=fraction).write(trial_dir)
    out = subprocess.run([sys.executable, "-c", CHILD, str(trial_dir)], capture_output=True, text=True, timeout=120,
                         check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_a_cpu_trial_limits_its_address_space_and_a_cuda_trial_does_not(tmp_path):
    cpu = _child_limits(tmp_path, "cpu", 3)
    assert cpu["after"] == [3 * GiB, 3 * GiB] and cpu["cap"] is None
    gpu = _child_limits(tmp_path, "cuda:0", 3, 0.45)
    assert gpu["after"] == gpu["before"]                                  # CUDA's start-up keeps its address space
    assert gpu["cap"] == [0.45, 3]                                        # for train_model, in no environment variable
    assert gpu["env"] == cpu["env"]
    auto = _child_limits(tmp_path, "auto", 3)                            # resolved as train_model resolves it
    if torch.cuda.device_count():
        assert auto["after"] == auto["before"] and auto["cap"] == [None, 3]
    else:
        assert auto["after"] == [3 * GiB, 3 * GiB] and auto["cap"] is None