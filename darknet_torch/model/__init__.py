"""Build and run Darknet networks: cfg sections -> modules (builder), the Darknet module, weights IO, heads."""
from darknet_torch.model.builder import LayerInfo, create_modules
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.weights import WeightsHeader

__all__ = ["Darknet", "LayerInfo", "WeightsHeader", "create_modules"]
