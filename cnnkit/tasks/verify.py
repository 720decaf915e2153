"""Face verification, the notes' fourth application: are two images the same identity?

The network maps an image to an embedding (any zoo backbone, 128-d; FaceNet's ``facenet_nn1`` / ``facenet_nn2`` as
the tables give them, L2-normalised). On a zoo backbone the loss trains a linear projection of the pooled features
(L2-normalised), and the embedding of the trained run is the PCA of its grid-pooled features, fitted on training
images before each validation and not normalised (:class:`cnnkit.verification.embedder.Embedder`). Training uses
FaceNet's triplet loss with online semi-hard negative mining (margin 0.2) on batches of P identities × K = 4 images
(``epoch_order``), or the contrastive loss (``task.metric_loss: contrastive``; ``task.margin``,
``task.embedding_dim``).

Open set by default: the identities are the data's classes (a folder per identity, or a named dataset's
classes), and the last 30 % of them (Fashion-MNIST and digits: 7, 8, 9) are held out for the test pairs and
never seen in training. The validation pairs (the threshold, the best epoch) come from identities held out from
training too when there are enough of them (``task.val_identities``; by default 10 % of the training identities
when there are 20 or more), else from held-out images of the training identities: on Fashion-MNIST's 7 those
reward specialising in the training classes and cannot choose settings for unseen ones. The distance
threshold is chosen on the validation pairs; the test reports pair accuracy at it, ROC AUC, EER and TAR at FAR
1e-3 and 1e-2 (``cnnkit.verification.pairs``), and one-shot identification (one enrolled image per unseen
identity, the others identified by their nearest enrolled embedding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Config, from_dict, load_yaml
from ..data import DataSplits, load_data
from ..data.augment import BatchAugment, preset
from ..data.datasets import TensorImages
from ..data.splits import WHOLE, as_new_data, describe_split, other_data, record_name
from ..errors import CnnkitError
from ..io import json_safe, read_json, write_json
from ..runcard import RunCard, read_card
from ..runtime import Normalize, autocast, batches
from ..verification.embedder import GRID, Embedder, headless
from ..verification.lfw import index_pairs, lfw_protocol, one_fold
from ..verification.losses import contrastive_loss, triplet_semihard_loss
from ..verification.pairs import best_threshold, lfw_pairs, pair_distances, sample_pairs, verification_metrics
from ..verification.sampling import pk_order
from .classify import input_size

TEST_IDENTITIES = 0.3  # the share of identities held out for the open-set test
VAL_IDENTITIES = 0.1  # the share of training identities held out for the validation pairs, by default …
MIN_TO_HOLD_OUT = 20  # … when there are at least this many training identities
K_PER_IDENTITY = 4
LOSSES = {"triplet": 0.2, "contrastive": 1.0}  # the losses and their default margins
PAIRS = 1000  # matched and as many mismatched pairs sampled from a split
FIT_IMAGES = 4096  # training images the PCA embedding is fitted on (a seeded sample)
THRESHOLD_FILE = "verify.json"


def _concat(parts: list[TensorImages]) -> TensorImages:
    return TensorImages(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                        [i for p in parts for i in p.ids])  # fmt: skip


def _keep(ds: TensorImages, idents: set[int]) -> TensorImages:
    return ds.subset(torch.tensor([i for i, y in enumerate(ds.labels.tolist()) if y in idents], dtype=torch.long))


def held_out(data: DataSplits) -> list[int]:
    """The validation identities not trained on (sorted; none when validation uses the training identities)."""
    return sorted(set(data.val.labels.tolist()) - set(data.train.labels.tolist()))


def check_identities(ds: TensorImages, classes: list[str], what: str, skip_bad: bool, skipped: list) -> TensorImages:
    """Every identity of ``ds`` needs 2 images (a matched pair, an anchor and its positive): a CnnkitError,
    or with ``skip_bad`` the identity is left out and listed in ``skipped``."""
    ids, counts = ds.labels.unique(return_counts=True)
    few = [int(i) for i, c in zip(ids, counts) if c < 2]
    if few and not skip_bad:
        raise CnnkitError(f"expected at least 2 images per identity in the {what}, found 1 for"
                          f" {', '.join(classes[i] for i in few[:5])}; add images or pass --skip-bad")  # fmt: skip
    skipped += [(classes[i], f"one image in the {what}: left out") for i in few]
    return _keep(ds, {int(i) for i in ids} - set(few))


def in_memory(data: DataSplits) -> None:
    """Refuse splits decoded on demand (a folder too large for memory): verification regroups them by identity."""
    if not all(isinstance(getattr(data, s), TensorImages) for s in ("train", "val", "test")):
        raise CnnkitError("expected the images to fit in memory for verification, found a larger folder; resize"
                          " them smaller with --set data.image_size=N")  # fmt: skip


def validation_identities(n_train: int, asked: int | None) -> int:
    """How many of ``n_train`` training identities to hold out for the validation pairs: ``asked``
    (``task.val_identities``), or by default :data:`VAL_IDENTITIES` of them when there are at least
    :data:`MIN_TO_HOLD_OUT` (few identities are all needed for training; validation then uses held-out images of
    them). Raises CnnkitError when fewer than 2 would be left to train on."""
    k = (max(2, round(n_train * VAL_IDENTITIES)) if n_train >= MIN_TO_HOLD_OUT else 0) if asked is None else asked
    if k and n_train - k < 2:
        raise CnnkitError(f"expected task.val_identities to leave at least 2 of the {n_train} training identities"
                          f" to train on, found {k}; give a smaller number (0: validate on the training"
                          " identities)")  # fmt: skip
    return k


def open_set_splits(data: DataSplits, skip_bad: bool = False, val_identities: int | None = None) -> DataSplits:
    """Train on the first 70 % of identities, test on all images of the last 30 % (never trained on). Validation:
    all images of the last ``k`` training identities, held out from training (:func:`validation_identities`), or
    with k = 0 the validation split of the training identities."""
    in_memory(data)
    n = len(data.classes)
    n_test = max(1, round(n * TEST_IDENTITIES))
    if n - n_test < 2:
        raise CnnkitError(f"expected at least 4 identities (2 to train on, held-out ones to test), found {n}")
    n_train = n - n_test - validation_identities(n - n_test, val_identities)
    train_ids, test_ids = set(range(n_train)), set(range(n - n_test, n))
    val_ids = set(range(n_train, n - n_test))
    skipped, splits = list(data.skipped), (data.train, data.val, data.test)
    train = check_identities(_keep(data.train, train_ids), data.classes, "training split", skip_bad, skipped)
    test = _concat([_keep(d, test_ids) for d in splits])
    test = check_identities(test, data.classes, "held-out identities", skip_bad, skipped)
    val = _concat([_keep(d, val_ids) for d in splits]) if val_ids else _keep(data.val, train_ids)
    return DataSplits(train, val, test, data.classes, data.in_chans, data.image_size, data.source, skipped,
                      data.hflip)  # fmt: skip


@torch.no_grad()
def embed_dataset(model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any = None,
                  fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:  # fmt: skip
    """Embeddings of every example, in eval mode: Tensor[N, dim] (float32, on the CPU). ``fn``: what runs on each
    normalised batch instead of ``model`` itself (e.g. ``model.features``), still with ``model`` in eval mode."""
    was = model.training
    model.eval()
    out = []
    try:
        for x, _ in batches(dataset, 256):
            with autocast(normalize.device, dtype):
                out.append((fn or model)(normalize(x)).float().cpu())
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0, getattr(model, "dim", 128))


def fit_embedding(model: Embedder, dataset: TensorImages, normalize: Normalize, dtype: Any = None) -> None:
    """Fit ``model``'s PCA embedding (:meth:`Embedder.fit_projection`) on the grid-pooled features of
    ``dataset``'s images (training identities), computed in eval mode. Nothing to fit for an embedder without
    grid features (FaceNet's own embedding, runs from before the PCA embedding)."""
    if getattr(model, "grid", 0):
        model.fit_projection(embed_dataset(model, dataset, normalize, dtype, fn=model.features))


class Verify:
    """The verification task (see the module docstring); one instance per run.

    Args:
        loss: "triplet" (semi-hard mining, FaceNet) or "contrastive".
        margin: the triplet loss's α (0.2), or the contrastive loss's margin on the distance (1.0 when None).
        dim: embedding width.
        grid: cells per side of the pooled features of the PCA embedding (:class:`Embedder`); 0 for the trained
            projection as the embedding.
    """

    name = "verify"
    default_model = "smallcnn"
    monitors: ClassVar[dict[str, int]] = {"val_auc": 1, "val_pair_accuracy": 1, "val_loss": -1}
    default_monitor = "val_auc"
    epoch_line: ClassVar[dict[str, str]] = {"train_loss": "loss", "val_auc": "val AUC",
                                            "val_pair_accuracy": "val pair acc", "val_loss": "val loss"}  # fmt: skip

    def __init__(self, loss: str = "triplet", margin: float | None = None, dim: int = 128, grid: int = GRID) -> None:
        self.grid = grid
        self.configure(loss, margin, dim)

    def configure(self, loss: str, margin: float | None, dim: int) -> None:
        """Set the loss, its margin (None: the loss's default) and the embedding width."""
        if loss not in LOSSES:
            raise CnnkitError(f"expected task.metric_loss one of {', '.join(LOSSES)}, found {loss!r}")
        self.loss_name, self.dim = loss, dim
        self.margin = margin if margin is not None else LOSSES[loss]

    # ---- training ---------------------------------------------------------------------------------------------
    def load_data(self, cfg: Config) -> DataSplits:
        """The open-set splits; also takes the loss, margin and embedding width from ``cfg.task`` (the first thing
        the trainer asks of a task)."""
        self.configure(cfg.task.metric_loss, cfg.task.margin, cfg.task.embedding_dim)
        return open_set_splits(load_data(cfg.data, seed=cfg.train.seed, image_size=input_size(cfg)),
                               cfg.data.skip_bad, cfg.task.val_identities)  # fmt: skip

    def build_model(self, cfg: Config, data: DataSplits) -> nn.Module:
        backbone = headless(cfg.model.name, data.in_chans, pretrained=cfg.model.pretrained, weights=cfg.model.weights)
        backbone.default_input = (data.in_chans, *data.image_size)
        return Embedder(backbone, self.dim, self.grid)

    def setup(self, cfg: Config, data: DataSplits, model: nn.Module) -> None:
        if cfg.data.mixup or cfg.data.cutmix:
            raise CnnkitError(
                "expected data.mixup=0 and data.cutmix=0 for verify (they mix identities), found them set"
            )
        self.augment = BatchAugment(preset(cfg.data.augment, data.image_size, cfg.data.name, data.hflip))
        self.grid = model.grid  # 0 for FaceNet's own embedding
        g = torch.Generator().manual_seed(cfg.train.seed)
        self.fit_images = data.train.subset(torch.randperm(len(data.train), generator=g)[:FIT_IMAGES])

    def epoch_order(self, dataset: TensorImages, batch_size: int, seed: int) -> Tensor:
        """P identities × K images per batch (see :func:`cnnkit.verification.pk_order`)."""
        return pk_order(dataset.labels, batch_size, K_PER_IDENTITY, seed)

    def prepare(self, x: Tensor, y: Tensor, normalize: Normalize) -> tuple[Tensor, Tensor]:
        return normalize(self.augment(x)), y.to(normalize.device)

    def loss(self, output: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
        """output: embeddings Tensor[B, dim]; targets: identities Tensor[B]."""
        if self.loss_name == "triplet":
            return triplet_semihard_loss(output, targets, self.margin), {}
        return contrastive_loss(output, targets, self.margin), {}

    def validate(self, model: nn.Module, dataset: Any, normalize: Normalize, dtype: Any) -> dict[str, float]:
        """Fits the PCA embedding on training images first, so the checkpoint saved after it holds the fit."""
        fit_embedding(model, self.fit_images, normalize, dtype)
        emb = embed_dataset(model, dataset, normalize, dtype)
        labels = dataset.labels
        if len(labels) < 2 or len(labels.unique()) < 2:
            return {k: math.nan for k in self.monitors}
        pairs = sample_pairs(labels, PAIRS, seed=0)
        dist = pair_distances(emb, pairs)
        m = verification_metrics(dist, pairs.same, best_threshold(dist, pairs.same))
        loss, _ = self.loss(F.normalize(emb[:1024], dim=1), labels[:1024])  # the losses are defined on the sphere
        return {"val_loss": float(loss), "val_auc": m["auc"], "val_pair_accuracy": m["accuracy"]}

    def card_fields(self, cfg: Config, data: DataSplits) -> dict[str, Any]:
        train_ids = sorted(set(data.train.labels.tolist()))
        test_ids = sorted(set(data.test.labels.tolist()))
        return {"task_fields": {"embedding_dim": self.dim, "embedding_grid": self.grid, "pca_l2": False,
                                "loss": self.loss_name, "margin": self.margin, "distance": "squared euclidean",
                                "hflip": data.hflip,
                                "train_identities": [data.classes[i] for i in train_ids],
                                "val_identities": [data.classes[i] for i in held_out(data)],
                                "test_identities": [data.classes[i] for i in test_ids]}}  # fmt: skip

    def report(self, run_dir: Path, **opts: Any) -> Path:
        from ..verification.report import write_report

        return write_report(run_dir, evaluate_run(run_dir, **opts))

    # ---- after training ---------------------------------------------------------------------------------------
    def build_from_card(self, card: RunCard, name: str) -> nn.Module:
        backbone = headless(name, card.input.channels)
        backbone.default_input = (card.input.channels, card.input.height, card.input.width)
        fields = card.task_fields  # runs from before the PCA embedding have no embedding_grid: their projection;
        # runs from before the unnormalised PCA embedding have no pca_l2: theirs was L2-normalised
        return Embedder(
            backbone,
            int(fields.get("embedding_dim", self.dim)),
            int(fields.get("embedding_grid", 0)),
            pca_l2=bool(fields.get("pca_l2", True)),
        )

    def predictor(self, run_dir: Path, device: str = "cpu") -> Any:
        return EmbeddingPredictor.from_run(run_dir, device)

    def evaluate(self, runs: list[str], opts: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
        if opts.get("ensemble") or opts.get("tta") or opts.get("predictions") or opts.get("gallery"):
            raise CnnkitError("expected no --ensemble, --tta, --predictions or --gallery for verify runs, found one")
        results = []
        for run in runs:
            m = evaluate_run(run, opts.get("data"), opts.get("split", "test"), opts.get("data_dir"),
                             opts.get("device", "cpu"))  # fmt: skip
            write_json(Path(run) / record_name(m["split"], opts.get("data")), json_safe({k: v for k, v in m.items()
                                                                         if k not in ("fpr", "tpr")}))  # fmt: skip
            results.append((m, format_metrics(m)))
        return results


class EmbeddingPredictor:
    """A trained embedder with its preprocessing: ``embed(images) -> Tensor[N, dim]`` (``cnnkit.load``).

    ``run_dir`` is None when the model came from an exported ``.onnx`` file (``cnnkit.deploy.load_onnx``): it
    embeds, but the threshold lives in the file's metadata, not in a run (``cnnkit.threshold``).
    """

    predicts = False  # no classes or objects: `cnnkit predict` and `cnnkit serve` refuse it before they start

    def __init__(self, model: nn.Module, card: RunCard, run_dir: Path | None = None, device: str = "cpu") -> None:
        from ..predict import Predictor

        self.run_dir, self.card = run_dir, card
        self._images = Predictor(model, card, device)  # its preprocessing (resize, channels, normalisation)
        self.model, self.classes, self.device = self._images.model, card.classes, self._images.device
        self.to_tensor, self.normalize = self._images.to_tensor, self._images.normalize  # what `cnnkit export` uses

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu") -> EmbeddingPredictor:
        from ..engine.checkpoint import load_weights
        from ..runcard import model_path

        run_dir = Path(run_dir)
        card = read_card(run_dir)
        if card.task != Verify.name:
            raise CnnkitError(f"expected a verify run in {str(run_dir)!r}, found a {card.task} run; train one with"
                              " `cnnkit train --task verify`")  # fmt: skip
        model = Verify().build_from_card(card, model_path(card, run_dir))
        load_weights(model, run_dir / "model.safetensors")
        return cls(model, card, run_dir, device)

    @torch.no_grad()
    def embed(self, images: list[Any], batch_size: int = 256) -> Tensor:
        """images (paths, arrays, PIL images or uint8 tensors) -> Tensor[N, dim] (see :class:`Embedder`)."""
        x = torch.stack([self.to_tensor(im) for im in images])
        model, normalize = self.inference_model()
        return torch.cat([model(normalize(b)).float().cpu() for b in x.split(batch_size)])

    def inference_model(self) -> tuple[nn.Module, Normalize]:
        """The embedder's folded copy and its Normalize (:meth:`cnnkit.predict.Predictor.inference_model`)."""
        return self._images.inference_model()

    def predict(self, images: Any, topk: int = 1) -> list:
        """Refused: a verify model gives embeddings, not classes (``cnnkit predict`` and the ONNX predictor ask it).

        Raises:
            CnnkitError: always, saying what to use instead.
        """
        raise CnnkitError(
            "expected a run that predicts classes or objects, found a verify run (its model maps an image to an"
            " embedding); compare two images with `cnnkit verify RUN A B`, or embed them with"
            " `cnnkit.load(RUN).embed(images)` (an exported file: `cnnkit.deploy.load_onnx(FILE).embed(images)`)"
        )

    def threshold_record(self) -> dict[str, Any]:
        """``verify.json``: ``threshold`` (same identity when the squared distance is ≤ it), ``distance`` and
        ``chosen_on``; chosen on the validation pairs and saved on first use.

        An exported model's record is the one ``cnnkit export`` wrote into the file's metadata.

        Raises:
            CnnkitError: an exported file without the record.
        """
        if self.run_dir is None:
            return exported_threshold(self.model)
        path = self.run_dir / THRESHOLD_FILE
        if not path.is_file():
            evaluate_run(self.run_dir, device=str(self.device))  # writes it
        return read_json(path)

    def threshold(self) -> float:
        """The distance threshold chosen on the validation pairs (computed and saved on first use)."""
        return float(self.threshold_record()["threshold"])


def exported_threshold(model: Any) -> dict[str, Any]:
    """The ``verify.json`` record that ``cnnkit export`` keeps in an exported model's metadata (``cnnkit.threshold``,
    ``cnnkit.distance``, ``cnnkit.threshold_chosen_on``); ``model`` is an ONNX Runtime model (``OrtModule``)."""
    session = getattr(model, "session", None)
    meta = session.get_modelmeta().custom_metadata_map if session is not None else {}
    if "cnnkit.threshold" not in meta:
        raise CnnkitError("expected the distance threshold in the exported model's metadata (cnnkit.threshold),"
                          " found none; export the verify run again with `cnnkit export`")  # fmt: skip
    return {"threshold": float(meta["cnnkit.threshold"]), "distance": meta.get("cnnkit.distance", ""),
            "chosen_on": meta.get("cnnkit.threshold_chosen_on", "")}  # fmt: skip


def evaluate_run(run: str | Path, data: str | None = None, split: str = "test", data_dir: str | None = None,
                 device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """The run's verification figures on ``split`` (the model on ``device``): the threshold from the validation
    pairs (saved to ``verify.json``), then pair accuracy, ROC AUC, EER, TAR@FAR and one-shot identification
    accuracy."""
    from ..data.splits import check_split

    run = Path(run)
    card = read_card(run)
    cfg = from_dict(load_yaml(run / "config.yaml"))
    if data_dir:
        cfg.data.data_dir = data_dir
    if other_data(data, cfg.data.name):
        return evaluate_new_identities(run, card, cfg, str(data), split, device)
    if "val_identities" not in card.task_fields:  # a run from before held-out validation identities trained on all
        cfg.task.val_identities = 0
    splits = Verify().load_data(cfg)
    if data is None:
        check_split(card, run, splits, split)
    pred = EmbeddingPredictor.from_run(run, device)
    model, normalize = pred.inference_model()
    val_emb = embed_dataset(model, splits.val, normalize)
    val_pairs = sample_pairs(splits.val.labels, PAIRS, seed=0)
    threshold = best_threshold(pair_distances(val_emb, val_pairs), val_pairs.same)
    unseen = held_out(splits)
    of = f" of {len(unseen)} identities not trained on" if unseen else ""
    write_json(run / THRESHOLD_FILE, {"threshold": threshold, "distance": "squared euclidean",
                                      "chosen_on": f"{len(val_pairs)} validation pairs{of}"})  # fmt: skip
    return score_pairs(model, normalize, getattr(splits, split), splits.classes, threshold) | {
        "run": str(run), "task": "verify", "data": splits.source, "split": split}  # fmt: skip


def evaluate_new_identities(run: Path, card: RunCard, cfg: Config, data: str, split: str, device: str
                            ) -> dict[str, Any]:  # fmt: skip
    """The run on new data (``evaluate --data``): every image of the identities it neither trained nor validated on
    (by name: a folder of new people is all of them), at the run's own threshold (``verify.json``; choosing one
    on the new data would change what ``cnnkit verify`` decides)."""
    if split != "test":
        raise CnnkitError(f"expected --split test for {data!r}, found --split {split}; new data is evaluated on"
                          " every image of the identities the run has not seen")  # fmt: skip
    cfg.data.name = data
    size = (card.input.height, card.input.width)  # the run's input size, whatever the new data's own
    full = load_data(as_new_data(cfg.data), seed=cfg.train.seed, image_size=size)
    in_memory(full)
    fields = card.task_fields
    seen = set(fields.get("train_identities", [])) | set(fields.get("val_identities", []))
    unseen = {i for i, name in enumerate(full.classes) if name not in seen}
    if not unseen:
        raise CnnkitError(f"expected identities in {full.source!r} that run {str(run)!r} was not trained or"
                          f" validated on, found only its own ({', '.join(full.classes[:5])}…); evaluate on images of"
                          " other people")  # fmt: skip
    ds = _concat([_keep(s, unseen) for s in (full.train, full.val, full.test)])
    ds = check_identities(ds, full.classes, "new identities", cfg.data.skip_bad, [])
    pred = EmbeddingPredictor.from_run(run, device)
    threshold = pred.threshold()  # the run's own, chosen on its validation pairs
    model, normalize = pred.inference_model()
    return score_pairs(model, normalize, ds, full.classes, threshold) | {
        "run": str(run), "task": "verify", "data": full.source, "split": WHOLE}  # fmt: skip


def score_pairs(model: nn.Module, normalize: Normalize, ds: TensorImages, classes: list[str], threshold: float
                ) -> dict[str, Any]:  # fmt: skip
    """The figures on ``ds``'s identities: 2000 seeded pairs at ``threshold`` (pair accuracy, ROC AUC, EER,
    TAR@FAR), one-shot identification, and what was scored (``n_images``, ``identities``)."""
    emb = embed_dataset(model, ds, normalize)
    pairs = sample_pairs(ds.labels, PAIRS, seed=1)
    m = verification_metrics(pair_distances(emb, pairs), pairs.same, threshold)
    idents = sorted(set(ds.labels.tolist()))
    return m | one_shot_accuracy(emb, ds.labels) | {"n_images": len(ds), "identities": [classes[i] for i in idents]}


def evaluate_pairs(run: str | Path, pairs_file: str | Path, root: str | Path, *, skip_bad: bool = False,
                   faces: bool = False, min_face: int = 20, batch_size: int = 256, device: str = "cpu"
                   ) -> dict[str, Any]:  # fmt: skip
    """LFW's standard evaluation of a verify run on a ``pairs.txt`` (LFW's, or one in its layout for your own
    faces under ``root``): every distinct image the pairs name is embedded once (with ``faces``, its aligned face
    crop), then :func:`cnnkit.verification.lfw.lfw_protocol` on the squared distances (a one-fold file such as
    ``pairsDevTest.txt``: :func:`~cnnkit.verification.lfw.one_fold` at the run's threshold).

    Returns:
        ``lfw_protocol``'s figures plus ``run``, ``pairs_file``, ``root``, ``n_images`` (distinct images
        embedded), ``faces``, ``n_skipped`` and ``skipped`` (the pair lines left out with ``skip_bad``, as
        "line N: reason").
    """
    found, skipped = lfw_pairs(pairs_file, root, skip_bad)
    if not found:
        raise CnnkitError(f"expected pairs whose images are under {str(root)!r}, found all {len(skipped)} skipped"
                          f" ({skipped[0] if skipped else 'none'}); check --root")  # fmt: skip
    pred = EmbeddingPredictor.from_run(run, device)
    images, pairs = index_pairs(found)
    emb = embed_images(pred, images, faces, min_face, batch_size)
    dist = pair_distances(emb, pairs)
    if len(pairs.fold.unique()) == 1:  # View 1 (pairsDevTest.txt): scored at the run's own threshold
        record = pred.threshold_record()
        m = one_fold(dist, pairs.same, float(record["threshold"]), f"the run's {record.get('chosen_on', 'pairs')}")
    else:
        m = lfw_protocol(dist, pairs.same, pairs.fold)
    m.update(run=str(run), pairs_file=str(pairs_file), root=str(root), n_images=len(images), faces=faces,
             n_skipped=len(skipped), skipped=skipped)  # fmt: skip
    return m


def embed_images(pred: EmbeddingPredictor, images: list[Any], faces: bool = False, min_face: int = 20,
                 batch_size: int = 256) -> Tensor:  # fmt: skip
    """Embeddings of ``images`` (paths), ``batch_size`` at a time so memory stays bounded: Tensor[N, dim]. With
    ``faces`` each photo's most confident face is found, aligned and cropped first."""
    prepare = list
    if faces:
        from ..verification.faces import FaceCropper

        prepare = FaceCropper(min_face=min_face).crops
    chunks = [pred.embed(prepare(images[i : i + batch_size]), batch_size) for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)


def one_shot_accuracy(emb: Tensor, labels: Tensor, seed: int = 0) -> dict[str, float]:
    """Enrol one image per identity (seeded pick), identify every other image by its nearest enrolled
    embedding: ``one_shot_accuracy`` over those queries, and ``chance`` (1 / identities)."""
    g = torch.Generator().manual_seed(seed)
    enrolled = []
    for i in labels.unique().tolist():
        idx = (labels == i).nonzero().flatten()
        enrolled.append(int(idx[torch.randint(len(idx), (1,), generator=g)]))
    query = torch.ones(len(labels), dtype=torch.bool)
    query[enrolled] = False
    nearest = torch.cdist(emb[query], emb[enrolled]).argmin(1)
    acc = (labels[enrolled][nearest] == labels[query]).float().mean()
    return {"one_shot_accuracy": float(acc), "one_shot_chance": 1 / len(enrolled), "one_shot_queries": int(query.sum())}


def format_metrics(m: dict[str, Any]) -> str:
    """The terminal text of ``cnnkit evaluate`` for a verify run."""
    return "\n".join([
        f"{describe_split(m['split'], m['data'])}: {m['n_images']} images of {len(m['identities'])} identities never"
        f" seen in training ({', '.join(m['identities'][:10])}{'…' if len(m['identities']) > 10 else ''});"
        f" {m['n_pairs']} pairs",
        f"  pair accuracy {m['accuracy']:.4f} at threshold {m['threshold']:.4f} (squared distance, chosen on"
        " validation pairs)",
        f"  ROC AUC {m['auc']:.4f}   EER {m['eer']:.4f}   TAR@FAR=1e-3 {m['tar_at_far_1e-3']:.4f}"
        f"   TAR@FAR=1e-2 {m['tar_at_far_1e-2']:.4f}",
        f"  one-shot identification (one enrolled image per identity): {m['one_shot_accuracy']:.4f}"
        f" over {m['one_shot_queries']} images (chance {m['one_shot_chance']:.4f})",
    ])  # fmt: skip
