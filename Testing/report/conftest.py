"""Fixtures for the analysis/report tests: real sqlite Optuna studies built in tmp folders."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def single_work(tmp_path_factory) -> Path:
    from studies import build_single

    work = tmp_path_factory.mktemp("single")
    build_single(work)
    return work


@pytest.fixture(scope="session")
def multi_work(tmp_path_factory) -> Path:
    from studies import build_multi

    work = tmp_path_factory.mktemp("multi")
    build_multi(work)
    return work
