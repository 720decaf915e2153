"""Datasets (Fashion-MNIST IDX, scikit-learn digits, image folders), image reading and downloads."""

from .datasets import NAMED, DataSplits, TensorImages, load_data
from .images import BadImageError, load_image, pil_to_tensor

__all__ = ["NAMED", "BadImageError", "DataSplits", "TensorImages", "load_data", "load_image", "pil_to_tensor"]
