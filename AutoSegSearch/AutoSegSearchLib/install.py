"""Install the engine's Python dependencies into Slicer's Python, on first use and only after the user agreed.

PyTorch comes from the PyTorch extension (``PyTorchUtils``) when it is installed, because it picks the build that
matches the GPU driver; otherwise from PyPI.  The other packages come through ``slicer.util.pip_install``.
Qt-free: the Widget passes a ``confirm(text) -> bool`` callback (a dialog) and a ``pip_install`` function, which is
given a list of pip arguments (``slicer.util.pip_install`` splits a string at spaces, so a path with a space would
break).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Callable

# import name -> pip requirement, in install order (torch first: monai needs it)
REQUIREMENTS = {
    "torch": "torch>=2.10",     # weights_only loading is bypassable before 2.10 (published advisories)
    "monai": "monai>=1.4,<1.7",
    "optuna": "optuna>=4.2",
    "sklearn": "scikit-learn>=1.4",
    "pymoo": "pymoo>=0.6.1",
    "nibabel": "nibabel>=5.2",
    "slicerio": "slicerio>=1.1",
    "SimpleITK": "SimpleITK>=2.5,<2.6",
    "rich": "rich>=13",
    "yaml": "PyYAML>=6",
    "psutil": "psutil>=5.9",
}


class InstallError(RuntimeError):
    """The engine cannot be installed here; the message says why and what to do."""


def engine_source() -> str:
    """What to pip-install for AutoSegCore: $AUTOSEG_ENGINE_SPEC, else the source tree this module sits in."""
    spec = os.environ.get("AUTOSEG_ENGINE_SPEC")
    if spec:
        return spec
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists() and (repo / "AutoSegCore").is_dir():
        return str(repo)
    return "AutoSegCore"


MIN_TORCH = (2, 10)


def torch_too_old() -> bool:
    """Whether the installed torch predates ``MIN_TORCH`` (read from its metadata, without importing it)."""
    from importlib import metadata

    try:
        parts = metadata.version("torch").split("+")[0].split(".")[:2]
        return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts) < MIN_TORCH
    except (metadata.PackageNotFoundError, ValueError):
        return False


def missing_packages() -> list[str]:
    """Import names of the engine's dependencies (and the engine) that this Python cannot import, or (torch)
    whose installed version is older than the engine accepts."""
    names = [n for n in REQUIREMENTS if importlib.util.find_spec(n) is None or (n == "torch" and torch_too_old())]
    if importlib.util.find_spec("AutoSegCore") is None:
        names.append("AutoSegCore")
    return names


def engine_installed() -> bool:
    return not missing_packages()


def install_engine(confirm: Callable[[str], bool], pip_install: Callable[[list[str]], object],
                   torch_installer: Callable[[], object] | None = None) -> bool:
    """Install what is missing. Returns False if the user declined; raises InstallError when it cannot."""
    missing = missing_packages()
    if not missing:
        return True
    text = ("AutoSegSearch needs these Python packages in Slicer's Python, which are not installed yet:\n\n  "
            + ", ".join(missing) + "\n\nInstalling can take several minutes and downloads up to ~2 GB "
            "(PyTorch). Install now?")
    if not confirm(text):
        return False
    try:
        if "torch" in missing:
            if torch_installer is None:
                torch_installer = pytorch_extension_installer()
            if torch_installer is not None:
                torch_installer()
            else:
                pip_install([REQUIREMENTS["torch"]])
        for name in missing:
            if name not in ("torch", "AutoSegCore"):
                pip_install([REQUIREMENTS[name]])
        if "AutoSegCore" in missing:
            pip_install([engine_source()])
    except Exception as exc:  # pip's failures come as many types; the user needs one clear message
        raise InstallError(
            f"installing the AutoSegSearch engine failed: {exc}. Check the internet connection and the Python "
            f"console log; to install by hand run in Slicer's Python console: "
            f"slicer.util.pip_install([{engine_source()!r}])") from exc
    importlib.invalidate_caches()
    still = missing_packages()
    if still:
        raise InstallError(f"after installing, these packages still cannot be imported: {', '.join(still)}. "
                           "Restart Slicer and try again.")
    return True


def pytorch_extension_installer() -> Callable[[], object] | None:
    """``PyTorchUtils`` installer from the PyTorch extension, or None when that extension is not installed."""
    try:
        import PyTorchUtils  # noqa: PLC0415 - provided by the Slicer PyTorch extension, if installed
    except ImportError:
        return None

    def install():
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.10")
        if torch is None:
            raise InstallError("the PyTorch extension could not install PyTorch")
        return torch

    return install
