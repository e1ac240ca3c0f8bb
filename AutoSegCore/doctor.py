"""What this machine gives the engine — `autoseg doctor [--json]`.

The first check after installing: ``pip install torch==2.13.0`` from the package index is the CUDA build on
Linux, the CPU wheel is a separate download, and a search on the wrong one runs for hours on the CPU without
saying so.  :func:`environment_report` says which build is installed, what it sees (each GPU's memory, bf16,
compute capability; CUDA MPS), what ``--device auto`` and ``training.amp: auto`` will pick, and the threads.
It is a diagnostic: where a GPU is visible it initialises CUDA to read the free memory.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

MPS_PIPE_DEFAULT = Path("/tmp/nvidia-mps")       # the MPS control daemon's pipe folder when none is configured
CUDA_AMP_AUTO = "measured per GPU and net on first use (cached)"


def mps_active() -> bool:
    """Whether CUDA MPS (one GPU's compute shared by several processes, e.g. --jobs trials) is running here."""
    return bool(os.environ.get("CUDA_MPS_PIPE_DIRECTORY")) or MPS_PIPE_DEFAULT.exists()


def _gpu(index: int) -> dict:
    import torch

    props = torch.cuda.get_device_properties(index)
    free, total = torch.cuda.mem_get_info(index)
    return {"index": index, "name": props.name, "total_memory_gb": round(total / 2**30, 2),
            "free_memory_gb": round(free / 2**30, 2), "bf16": (props.major, props.minor) >= (8, 0),
            "compute_capability": f"{props.major}.{props.minor}"}


def environment_report() -> dict:
    """The machine as the engine sees it, as one JSON-safe dict:

    - ``python``, ``torch``: versions; ``torch_cuda``: the CUDA version torch was built for (None: a CPU build,
      which never uses a GPU);
    - ``cuda_available``; ``gpus``: per visible GPU its ``index``, ``name``, ``total_memory_gb``,
      ``free_memory_gb``, ``bf16`` (native: compute capability ≥ 8.0) and ``compute_capability`` ("8.0");
    - ``mps_active``: CUDA MPS (``CUDA_MPS_PIPE_DIRECTORY`` set, or ``/tmp/nvidia-mps`` exists);
    - ``device_auto``: what ``--device auto`` trains on (``cpu`` or ``cuda:N``,
      :func:`AutoSegCore.utils.device.pick_device`);
    - ``cpu_bf16_native`` and ``amp_auto``: what ``training.amp: auto`` means there (on the CPU bf16 only with
      native AVX-512 bf16, else fp32; on a GPU measured per GPU and net on first use, then cached);
    - ``threads`` (torch's intra-op threads in this process), ``autoseg_threads`` (``AUTOSEG_THREADS``, which
      the engine uses instead when set) and ``cpu_count``.
    """
    import torch

    from AutoSegCore.utils.device import pick_device

    cuda = torch.cuda.is_available()
    device = pick_device("auto")
    cpu_bf16 = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    if device.type == "cuda":
        amp = CUDA_AMP_AUTO
    else:
        amp = "bf16 (this CPU has native bf16)" if cpu_bf16 else "fp32 (this CPU has no native bf16)"
    return {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cuda_available": cuda, "gpus": [_gpu(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "mps_active": mps_active(), "device_auto": str(device), "cpu_bf16_native": cpu_bf16, "amp_auto": amp,
            "threads": torch.get_num_threads(), "autoseg_threads": os.environ.get("AUTOSEG_THREADS") or None,
            "cpu_count": os.cpu_count()}


def format_report(report: dict) -> str:
    """:func:`environment_report` as the lines `autoseg doctor` prints, ending with what to do when a GPU is
    present but unusable (a CPU build, or a CUDA build that sees no GPU)."""
    build = f"CUDA {report['torch_cuda']} build" if report["torch_cuda"] else "CPU build: never uses a GPU"
    threads = (f"{report['threads']} (torch intra-op); AUTOSEG_THREADS {report['autoseg_threads'] or 'unset'}; "
               f"{report['cpu_count']} CPUs")
    lines = [f"python               {report['python']}",
             f"torch                {report['torch']} ({build})",
             f"CUDA available       {'yes' if report['cuda_available'] else 'no'}"]
    for g in report["gpus"]:
        lines.append(f"GPU {g['index']:<17d}{g['name']}: {g['total_memory_gb']:.1f} GB total, "
                     f"{g['free_memory_gb']:.1f} GB free, bf16 {'yes' if g['bf16'] else 'no'}, "
                     f"compute capability {g['compute_capability']}")
    if not report["gpus"]:
        lines.append("GPUs                 none visible")
    lines += [f"CUDA MPS             {'active' if report['mps_active'] else 'not active'}",
              f"--device auto        {report['device_auto']}",
              f"training.amp: auto   {report['amp_auto']}",
              f"threads              {threads}"]
    if not report["torch_cuda"] and platform.system() == "Linux":
        lines.append("hint: for an NVIDIA GPU install torch's CUDA build (PyPI's Linux wheel): "
                     "pip install --force-reinstall --index-url https://pypi.org/simple torch==2.13.0")
    elif report["torch_cuda"] and not report["cuda_available"]:
        lines.append("hint: this CUDA build sees no GPU: check nvidia-smi, the driver and CUDA_VISIBLE_DEVICES")
    return "\n".join(lines)
