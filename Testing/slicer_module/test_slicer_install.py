"""First-use installer: what it finds missing here, and that it asks before touching anything."""
from __future__ import annotations

import importlib.util

from AutoSegSearchLib import install
from slicer_testkit import REPO


def test_this_environment_has_every_engine_dependency():
    assert install.missing_packages() == []
    assert install.engine_installed()


def test_nothing_is_asked_or_installed_when_complete():
    asked, installed = [], []
    assert install.install_engine(confirm=lambda text: asked.append(text) or False, pip_install=installed.append)
    assert asked == [] and installed == []


def test_engine_source_is_this_checkout_unless_overridden(monkeypatch):
    monkeypatch.delenv("AUTOSEG_ENGINE_SPEC", raising=False)
    assert install.engine_source() == str(REPO)
    monkeypatch.setenv("AUTOSEG_ENGINE_SPEC", "AutoSegCore==0.1.0")
    assert install.engine_source() == "AutoSegCore==0.1.0"


def test_declined_confirmation_installs_nothing(monkeypatch):
    """Simulate a Python without monai (hide it from find_spec): the user is asked, says no, nothing runs."""
    real = importlib.util.find_spec
    monkeypatch.setattr(install.importlib.util, "find_spec", lambda name, *a: None if name == "monai" else real(name, *a))
    asked, installed = [], []
    assert install.missing_packages() == ["monai"]
    assert install.install_engine(confirm=lambda text: asked.append(text) or False,
                                  pip_install=installed.append) is False
    assert "monai" in asked[0] and installed == []


def test_every_requirement_is_a_pip_requirement_of_the_project():
    pyproject = (REPO / "pyproject.toml").read_text()
    for requirement in install.REQUIREMENTS.values():
        assert requirement.split(">")[0].split("<")[0].split("=")[0] in pyproject, requirement
