"""Small shared blocks that torchvision lacks."""

from .blocks import conv_bn_act
from .classic import conv_relu, lrn
from .se import SqueezeExcite
from .separable import SeparableConv2d, depthwise_separable

__all__ = ["SeparableConv2d", "SqueezeExcite", "conv_bn_act", "conv_relu", "depthwise_separable", "lrn"]
