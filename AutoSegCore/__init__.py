"""AutoSegCore: the headless engine of AutoSegSearch.

Finds a good segmentation network and training recipe for a labelled CT/MR dataset cheaply (proxy data,
proxy networks, four search strategies as Optuna samplers), trains it with MONAI/PyTorch and writes
predictions in the original image geometry.  Never imports slicer, qt or vtk.
"""
from AutoSegCore.errors import AutoSegError, ConfigError, DatasetError, SearchFailed, StorageError

__version__ = "0.1.0"
__all__ = ["AutoSegError", "ConfigError", "DatasetError", "SearchFailed", "StorageError", "__version__"]
