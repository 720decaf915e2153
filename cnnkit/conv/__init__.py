"""The convolution lab: named kernels, correlation vs true convolution, stride, padding and output sizes."""

from .kernels import KERNELS, Kernel, get_kernel, parse_matrix
from .ops import conv_weights, filter2d, fitting_choices, formula, output_size, receptive_field, same_padding

__all__ = [
    "KERNELS",
    "Kernel",
    "conv_weights",
    "filter2d",
    "fitting_choices",
    "formula",
    "get_kernel",
    "output_size",
    "parse_matrix",
    "receptive_field",
    "same_padding",
]
