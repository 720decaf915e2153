"""Datasets (Fashion-MNIST, scikit-learn digits, image folders, IDX folders), image reading and downloads."""

from .datasets import NAMED, DataSplits, TensorImages, load_data, native_size
from .images import BadImageError, load_image, pil_to_tensor

__all__ = [
    "NAMED", "BadImageError", "DataSplits", "TensorImages", "load_data", "load_image", "native_size", "pil_to_tensor",
]  # fmt: skip
