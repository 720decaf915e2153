"""Detection data: every label format gives the same images and boxes (empty label files are negatives), bad
labels fail with file and line or are skipped, and box-aware augmentation keeps boxes and labels together."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnkit.config import build_config
from cnnkit.data.labels import LabelError
from cnnkit.detection.data import DetectAugment, DetectionImages, load_detection_data


def _load(path: Path, *sets: str):
    return load_detection_data(build_config(sets=[f"data.name={path}", *sets]).data)


def test_yolo_coco_and_voc_give_the_same_images_and_boxes_including_negatives(det_scenes):
    loaded = {f: _load(p) for f, p in det_scenes.items()}
    ref = loaded["yolo"]
    assert ref.image_size == (32, 32) and len(ref.train) == 24 and ref.hflip is False
    counts = [len(t["boxes"]) for t in ref.train.targets]
    assert 0 in counts and max(counts) == 3  # negatives (empty label files) are kept
    for fmt in ("coco", "voc"):
        other = loaded[fmt]
        assert other.classes == ref.classes
        for split in ("train", "test"):
            a, b = getattr(ref, split), getattr(other, split)
            by_name = {Path(i).name.split("_")[-1]: k for k, i in enumerate(b.ids)}
            for i, ident in enumerate(a.ids):
                j = by_name[Path(ident).name]
                assert torch.equal(a.images[i], b.images[j])
                ta, tb = a.targets[i], b.targets[j]
                order_a, order_b = ta["boxes"][:, 0].argsort(), tb["boxes"][:, 0].argsort()
                assert torch.equal(ta["labels"][order_a], tb["labels"][order_b])
                assert torch.allclose(ta["boxes"][order_a], tb["boxes"][order_b], atol=1e-3)


def test_boxes_are_scaled_with_the_image(det_scenes):
    small, large = _load(det_scenes["yolo"]), _load(det_scenes["yolo"], "data.image_size=64")
    assert large.image_size == (64, 64)
    for a, b in zip(small.train.targets, large.train.targets):
        assert torch.allclose(a["boxes"] * 2, b["boxes"], atol=1e-4)


def test_take_returns_a_batch_of_images_and_one_target_per_image(det_scenes):
    ds = _load(det_scenes["yolo"]).train
    x, targets = ds.take(torch.tensor([3, 0]))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8 and len(targets) == 2
    assert torch.equal(targets[1]["boxes"], ds.targets[0]["boxes"])


def test_a_bad_label_names_its_file_and_line_or_is_skipped(tmp_path, det_scenes):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(det_scenes["yolo"].parent, root, ignore=shutil.ignore_patterns("VOC", "annotations", "masks"))
    label = sorted((root / "labels" / "train").glob("*.txt"))[0]
    label.write_text("12 0.5 0.5 0.2 0.2\n")  # class 12 of 10
    with pytest.raises(LabelError, match=rf"{label.name}:1"):
        _load(root / "data.yaml")
    data = _load(root / "data.yaml", "data.skip_bad=true")
    assert len(data.train) == 23 and any(label.name in p for p, _ in data.skipped)


def test_augmentation_moves_boxes_with_pixels_and_drops_boxes_cut_to_nothing():
    torch.manual_seed(0)
    image = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    image[0, :, 10:20, 12:16] = 255  # a white bar whose box is [12, 10, 16, 20]
    target = {"boxes": torch.tensor([[12.0, 10.0, 16.0, 20.0], [0.0, 0.0, 2.0, 32.0]]), "labels": torch.tensor([4, 7])}
    augment, dropped = DetectAugment((32, 32), hflip=True, scale=(0.8, 1.2)), 0
    for _ in range(40):
        x, (t,) = augment(image, [target])
        assert len(t["boxes"]) == len(t["labels"]) and bool((t["boxes"] >= 0).all() and (t["boxes"] <= 32).all())
        bar = t["boxes"][t["labels"] == 4]
        assert len(bar) == 1  # the bar stays inside the image
        x1, y1, x2, y2 = bar[0].round().long().tolist()
        assert x[0, 0, y1:y2, x1:x2].float().mean() > 100  # the box still frames the bright pixels
        dropped += int(7 not in t["labels"].tolist())
    assert dropped > 0  # the 2-pixel sliver at the edge was cut to nothing at least once, and dropped
    assert target["boxes"].shape == (2, 4)  # the input is untouched


def test_detection_images_checks_its_lengths():
    with pytest.raises(ValueError, match="as many targets"):
        DetectionImages(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [], ["a", "b"])
