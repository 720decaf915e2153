"""Model registry, contract and the architecture families (one file each)."""

from . import (  # noqa: F401  (importing a family registers its models)
    alexnet,
    densenet,
    efficientnet,
    facenet,
    fastcnn,
    googlenet,
    inception,
    lenet,
    mobilenet,
    nin,
    resnet,
    senet,
    shufflenet,
    smallcnn,
    vgg,
    xception,
    zfnet,
)
from ._contract import AuxOutput, Classifier, count_parameters, parameter_groups, split_aux
from ._registry import ModelInfo, create_model, list_models, model_info, model_rows, register_model

__all__ = [
    "AuxOutput",
    "Classifier",
    "ModelInfo",
    "count_parameters",
    "create_model",
    "list_models",
    "model_info",
    "model_rows",
    "parameter_groups",
    "register_model",
    "split_aux",
]
