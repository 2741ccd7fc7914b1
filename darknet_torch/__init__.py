"""darknet_torch: Darknet's cfg/weights in PyTorch, numerically identical to the C Darknet."""
# First, before anything here imports torch: libgomp reads its waiting policy once, when torch loads.
from darknet_torch.openmp import configure_openmp

configure_openmp()

from darknet_torch.errors import CfgError, DarknetError, DataError, WeightsError  # noqa: E402
from darknet_torch.model import Darknet, create_modules  # noqa: E402

__version__ = "0.1.0"

__all__ = ["CfgError", "Darknet", "DarknetError", "DataError", "WeightsError", "create_modules", "__version__"]
