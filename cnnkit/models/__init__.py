"""Model registry, contract and the architecture families (one file each)."""

from . import lenet, smallcnn  # noqa: F401  (registers the families)
from . import alexnet, densenet, efficientnet, googlenet, inception, mobilenet, nin, resnet  # noqa: F401
from . import senet, shufflenet, vgg, xception, zfnet  # noqa: F401
from ._contract import AuxOutput, Classifier, count_parameters, parameter_groups, split_aux
from ._registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = [
    "AuxOutput",
    "Classifier",
    "ModelInfo",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "parameter_groups",
    "register_model",
    "split_aux",
]
