"""Open-set verification on Fashion-MNIST: train an embedding (triplet loss, semi-hard mining, P×K batches) on
classes 0–6, then verify pairs and identify one-shot among classes 7–9, never seen in training.

Prints ROC AUC, EER, TAR at FAR 1e-3 / 1e-2, pair accuracy (threshold from validation pairs), one-shot
identification accuracy beside its chance level, the wall time and the CPU; and the baseline measured in the same
run: the ROC AUC of the raw pixels on the same test pairs, L2-normalised as they are and centred on the training
images' mean (no statistic of the test images is used, as the embedding uses none), and the trained model's
ratio to the better of the two (a trained embedding that does not beat its pixels has learned nothing that
carries to new identities).
Run alone (other PyTorch processes on the same cores slow it many times)::

    .venv/bin/python benchmarks/verify.py [--model resnet18] [--epochs 4] [--set key=value …]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cnnkit.machine import cpu_name


def pixel_baseline_auc(run: Path) -> dict[str, float]:
    """ROC AUC of the raw pixels, L2-normalised as they are ("raw") and centred on the training images' mean first
    ("centred"), on the pairs that ``evaluate_run`` scores (the held-out identities' test split, the same seeded
    pairs)."""
    import torch.nn.functional as F

    from cnnkit.config import from_dict, load_yaml
    from cnnkit.tasks.verify import PAIRS, Verify
    from cnnkit.verification.pairs import best_threshold, pair_distances, sample_pairs, verification_metrics

    data = Verify().load_data(from_dict(load_yaml(run / "config.yaml")))
    x = data.test.images.float().flatten(1)
    pairs = sample_pairs(data.test.labels, PAIRS, seed=1)
    out = {}
    for name, centre in (("raw", 0.0), ("centred", data.train.images.float().flatten(1).mean(0))):
        dist = pair_distances(F.normalize(x - centre, dim=1), pairs)
        out[name] = verification_metrics(dist, pairs.same, best_threshold(dist, pairs.same))["auc"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smallcnn")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", help="keep the run here (default: a temporary folder)")
    p.add_argument("--set", action="append", default=[], help="a config value, e.g. task.metric_loss=contrastive")
    a = p.parse_args()

    from cnnkit.cli import main as cnnkit_main
    from cnnkit.tasks import evaluate_runs, report

    out = Path(a.out or tempfile.mkdtemp(prefix="verify-bench-")) / "run"
    t0 = time.perf_counter()
    args = ["train", "--task", "verify", "--data", "fashion-mnist", "--model", a.model, "--epochs", str(a.epochs),
            "--batch-size", str(a.batch_size), "--out", str(out), "--quiet",
            *(arg for kv in a.set for arg in ("--set", kv))]  # fmt: skip
    assert cnnkit_main(args) == 0
    train_s = time.perf_counter() - t0
    [(m, text)] = evaluate_runs([str(out)])
    report(out)
    total_s = time.perf_counter() - t0
    print(text)
    base = pixel_baseline_auc(out)
    print(
        f"baseline, raw pixels: ROC AUC {base['raw']:.4f} (L2), {base['centred']:.4f} (centred on the training"
        f" mean, L2); trained / the better {m['auc'] / max(base.values()):.3f}"
    )
    print(
        f"model {a.model}, {a.epochs} epochs: training {train_s:.0f} s, with evaluation {total_s:.0f} s on {cpu_name()}"
    )
    print(f"run: {out}  (ROC: {out / 'report_files' / 'roc.png'})")


if __name__ == "__main__":
    main()
