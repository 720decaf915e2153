"""Weight initialisation schemes from the notes: scale by fan-in and activation, or break nothing at all.

``zeros`` is there to show the failure the notes warn about: every unit of a layer starts equal, gets the
same gradient, and stays equal — the symmetry is never broken.
"""

from __future__ import annotations

from torch import nn

from ..errors import CnnkitError

SCHEMES = ("default", "xavier", "kaiming", "normal", "zeros")


def init_weights(model: nn.Module, scheme: str = "default", std: float = 0.01) -> nn.Module:
    """Re-initialise every conv and linear layer of ``model`` in place (biases to zero); returns ``model``.

    Args:
        scheme: ``default`` (PyTorch's own), ``xavier`` (Glorot uniform, for tanh/sigmoid), ``kaiming``
            (He normal, fan-in, for ReLU), ``normal`` (N(0, ``std``²)), or ``zeros``.
    """
    if scheme not in SCHEMES:
        raise CnnkitError(f"expected model.init one of {', '.join(SCHEMES)}, found {scheme!r}")
    if scheme == "default":
        return model
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif scheme == "normal":
                nn.init.normal_(m.weight, 0.0, std)
            else:
                nn.init.zeros_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model
