"""What the engine asks of a task: the interface between the one training loop and an application.

The engine owns the loop, precision, channels_last, checkpoints and exact resume, DDP, early stopping, the
non-finite guard, progress bars, TensorBoard and curves; it knows no task. A task (``cnnkit.tasks.classify``,
``cnnkit.tasks.localize``, …) supplies everything specific to it through this protocol. The engine defines
the protocol and the tasks implement it, so the engine never imports a task.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor, nn

from ..config import Config
from ..data import DataSplits
from ..runtime import Normalize

Targets = Any  # what the task's datasets yield beside the images: labels Tensor[B], or a dict of tensors


class Task(Protocol):
    """The training side of a task. ``monitors`` maps each validation metric to +1 (higher is better) or -1;
    ``epoch_line`` names the history columns the per-epoch terminal line shows, with their labels.

    Two optional methods the engine uses when a task has them:

    - ``forward(net, x, targets) -> output``: the training forward pass, for models that take the targets
      (torchvision's detectors return their losses); default ``net(x)``.
    - ``epoch_order(dataset, batch_size, seed) -> Tensor[M]``: the example order of one epoch, for tasks that
      compose their batches (P identities × K images for a triplet loss); default a seeded permutation.
    """

    name: str
    default_model: str
    monitors: Mapping[str, int]
    default_monitor: str
    epoch_line: Mapping[str, str]

    def load_data(self, cfg: Config) -> DataSplits:
        """Train / val / test splits of uint8 images and their targets (``DataSplits``)."""
        ...

    def build_model(self, cfg: Config, data: DataSplits) -> nn.Module:
        """A contract model (``mean``, ``std``, ``group_matcher()``) with this task's head."""
        ...

    def setup(self, cfg: Config, data: DataSplits, model: nn.Module) -> None:
        """Prepare the loss and augmentation for a run (called once, after the model is built)."""
        ...

    def prepare(self, x: Tensor, targets: Targets, normalize: Normalize) -> tuple[Tensor, Targets]:
        """A training batch: uint8 images Tensor[B, C, H, W] and targets -> (augmented, normalised float images
        on the device, targets on the device)."""
        ...

    def loss(self, output: Any, targets: Targets) -> tuple[Tensor, dict[str, float]]:
        """(scalar loss, per-batch sums of the training statistics, e.g. {"accuracy": correct count})."""
        ...

    def validate(self, model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any) -> dict[str, float]:
        """Validation metrics, keyed ``val_*`` (``val_loss`` always; NaN on an empty split)."""
        ...

    def card_fields(self, cfg: Config, data: DataSplits) -> dict[str, Any]:
        """What this task adds to the run card (``task_fields``, …; a ``preprocessing`` dict is merged into the
        card's preprocessing: a grey classifier's images' look)."""
        ...

    def report(self, run_dir: Path, **opts: Any) -> Path:
        """Write the report on the test split (never used to choose anything); returns ``report.html``'s path.
        ``opts``: ``data``, ``split``, ``data_dir`` as ``cnnkit report`` takes them."""
        ...
