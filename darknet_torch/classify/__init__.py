"""Darknet's ``classifier predict``: top-K classes of a classification network for images."""
from darknet_torch.classify.predict import Classification, Classifier, top_k

__all__ = ["Classification", "Classifier", "top_k"]
