"""darknet_torch: Darknet's cfg/weights in PyTorch, numerically identical to the C Darknet."""
from darknet_torch.errors import CfgError, DarknetError, DataError, WeightsError
from darknet_torch.model import Darknet, create_modules

__version__ = "0.1.0"

__all__ = ["CfgError", "Darknet", "DarknetError", "DataError", "WeightsError", "create_modules", "__version__"]
