import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The machine is shared: every network test runs on one intra-op thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_fingerprints_small() -> list:
    """Fingerprints of two unlike datasets: the demo's isotropic Hippocampus crops and the anisotropic spleen CT."""
    from AutoSegCore.data.fingerprint import compute_fingerprint
    from shared_data import REPO, SPLEEN

    return [compute_fingerprint(REPO / "Resources" / "DemoData" / "Hippocampus"), compute_fingerprint(SPLEEN)]
