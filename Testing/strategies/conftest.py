"""Strategy tests run single-threaded torch and quiet Optuna logging (shared 2-core machine)."""
import optuna
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _quiet_single_thread():
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
