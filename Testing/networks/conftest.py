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
