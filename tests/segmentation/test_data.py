"""Segmentation data: the scene generator's COCO RLE masks decode to exactly its instance-id PNGs, polygons and
RLE both read, and a bad mask (outside the image, empty, of another size) fails naming the file and the object or
is skipped and listed; mirroring moves masks and boxes with the pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.config import build_config
from cnnkit.data.labels import LabelError
from cnnkit.segmentation.data import SegmentAugment, load_segmentation_data


def _load(path: Path, *sets: str):
    return load_segmentation_data(build_config(sets=[f"data.name={path}", *sets]).data)


def test_coco_rle_masks_equal_the_generators_instance_id_pngs(seg_scenes):
    data = _load(seg_scenes)
    assert data.image_size == (48, 48) and len(data.train) == 8 and len(data.test) == 4
    objects = 0
    for ds in (data.train, data.val, data.test):
        for ident, t in zip(ds.ids, ds.targets):
            ids = np.asarray(Image.open(Path(ident.replace("/images/", "/masks/"))))
            expected = torch.from_numpy(np.stack([ids == j for j in range(1, ids.max() + 1)]) if ids.max() else
                                        np.zeros((0, 48, 48), dtype=bool))  # fmt: skip
            assert torch.equal(t["masks"].bool(), expected)
            for box, mask in zip(t["boxes"], t["masks"]):  # each box is its mask's tight box
                ys, xs = torch.nonzero(mask, as_tuple=True)
                assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
            objects += len(t["masks"])
    assert objects > 10


def _coco(tmp_path: Path, segmentations: list) -> Path:
    """A 20×16 (W×H) image and one object per entry of ``segmentations`` (bbox (2, 2)-(12, 10))."""
    Image.fromarray(np.full((16, 20, 3), 90, dtype=np.uint8)).save(tmp_path / "a.png")
    anns = [{"id": j + 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 8], "segmentation": s, "iscrowd": 0}
            for j, s in enumerate(segmentations)]  # fmt: skip
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 16}], "annotations": anns,
           "categories": [{"id": 1, "name": "thing"}]}  # fmt: skip
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(doc))
    return path


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def _compressed(runs: list[int], size: list[int]) -> dict:
    """Run lengths -> COCO's compressed RLE string (pycocotools), whether or not they cover the image."""
    from pycocotools import mask as mask_utils

    return {"size": size, "counts": mask_utils.frPyObjects({"size": size, "counts": runs}, *size)["counts"].decode()}


# Rows 3-8 of columns 4-10 of a 16×20 image, column by column: 67 off, then (6 on, 10 off) × 6, 6 on, 151 off.
SQUARE_RUNS = [67, *[6, 10] * 6, 6, 151]


def test_polygon_and_rle_masks_are_read(tmp_path):
    square = np.zeros((16, 20), dtype=bool)
    square[3:9, 4:11] = True  # rows 3-8, columns 4-10
    polygon = [[2.0, 2.0, 12.0, 2.0, 12.0, 10.0, 2.0, 10.0]]
    uncompressed = {"size": [16, 20], "counts": SQUARE_RUNS}
    segs = [polygon, _rle(square), uncompressed, _compressed(SQUARE_RUNS, [16, 20])]
    data = _load(_coco(tmp_path, segs), "data.test_fraction=0", "data.val_fraction=0")
    (t,) = data.train.targets
    assert t["masks"].shape == (4, 16, 20)
    for k in (1, 2, 3):
        assert torch.equal(t["masks"][k].bool(), torch.from_numpy(square))
    poly = t["masks"][0].bool()
    assert poly[3:9, 3:11].all() and not poly[:1].any() and not poly[11:].any() and not poly[:, 13:].any()


def test_cvat_masks_written_as_crowd_rles_are_objects_unless_the_file_also_has_other_objects(tmp_path):
    """CVAT's COCO export writes every mask as an RLE with ``iscrowd: 1``: in a file of nothing else they are the
    objects; beside ordinary objects an ``iscrowd: 1`` region stays a crowd, left out as COCO means it."""
    square = np.zeros((16, 20), dtype=bool)
    square[3:9, 4:11] = True
    path = _coco(tmp_path, [_rle(square), _compressed(SQUARE_RUNS, [16, 20])])
    doc = json.loads(path.read_text())
    for ann in doc["annotations"]:
        ann["iscrowd"] = 1
    path.write_text(json.dumps(doc))
    (t,) = _load(path, "data.test_fraction=0", "data.val_fraction=0").train.targets
    assert t["masks"].shape == (2, 16, 20) and all(torch.equal(m.bool(), torch.from_numpy(square)) for m in t["masks"])
    doc["annotations"][0]["iscrowd"] = 0
    path.write_text(json.dumps(doc))
    (t,) = _load(path, "data.test_fraction=0", "data.val_fraction=0").train.targets
    assert t["masks"].shape == (1, 16, 20)
    doc["annotations"][0]["segmentation"] = _rle(np.zeros((16, 20), dtype=bool))  # a bad mask: named by its index
    doc["annotations"][0]["iscrowd"] = 1
    path.write_text(json.dumps(doc))
    with pytest.raises(LabelError, match=r"an empty mask in .*labels.json:annotations\[0\]"):
        _load(path, "data.test_fraction=0", "data.val_fraction=0")


@pytest.mark.parametrize(
    ("segmentation", "found"),
    [
        ([[2.0, 2.0, 25.0, 2.0, 12.0, 10.0]], "polygon point (25, 2) outside the 20×16 image"),
        (_rle(np.zeros((16, 20), dtype=bool)), "an empty mask"),
        (_rle(np.ones((8, 8), dtype=bool)), "an RLE of size [8, 8]"),
        (None, "an object without a mask"),
        ([[2.0, 2.0, "x", 2.0, 12.0, 10.0]], "a polygon with a non-number"),
        ({"size": [16, 20]}, "an RLE with no run lengths"),
        ({"size": [16, 20], "counts": SQUARE_RUNS[:-1]}, "an RLE with run lengths adding up to 169 pixels"),
        (_compressed(SQUARE_RUNS[:-1], [16, 20]), "an RLE with run lengths adding up to 169 pixels"),
        ({"size": [16, 20], "counts": "~~~"}, "an RLE with no run lengths"),
    ],
)
def test_a_bad_mask_names_the_file_and_object_or_is_skipped(tmp_path, segmentation, found):
    good = [[2.0, 2.0, 12.0, 2.0, 12.0, 10.0]]
    path = _coco(tmp_path, [good, segmentation])
    sets = ("data.test_fraction=0", "data.val_fraction=0")
    with pytest.raises(LabelError) as e:
        _load(path, *sets)
    message = str(e.value)
    assert (
        found in message
        and "annotations[1] (object 1 of a.png)" in message
        and str(path) in message
        and "\n" not in message
    )
    Image.fromarray(np.zeros((16, 20, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    doc = json.loads(path.read_text())
    doc["images"].append({"id": 2, "file_name": "b.png", "width": 20, "height": 16})
    doc["annotations"].append({"id": 9, "image_id": 2, "category_id": 1, "bbox": [2, 2, 10, 8], "segmentation": good})
    path.write_text(json.dumps(doc))
    data = _load(path, *sets, "data.skip_bad=true")
    assert [Path(i).name for i in data.train.ids] == ["b.png"]
    assert any(where == f"{path}:annotations[1] (object 1 of a.png)" and found in why for where, why in data.skipped)


def test_a_bad_mask_in_a_file_that_starts_with_a_byte_order_mark_names_its_object(tmp_path):
    path = _coco(tmp_path, [[[2.0, 2.0, 12.0, 2.0, 12.0, 10.0]], None])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # UTF-8 as Windows tools save it
    with pytest.raises(LabelError, match=r"an object without a mask in .*labels.json:annotations\[1\] \(object 1"):
        _load(path, "data.test_fraction=0", "data.val_fraction=0")


def test_mirroring_moves_masks_and_boxes_with_the_pixels():
    x = torch.zeros(1, 3, 8, 10, dtype=torch.uint8)
    x[0, :, 2:5, 1:4] = 200
    masks = (x[:, 0] > 0).to(torch.uint8)
    t = [{"boxes": torch.tensor([[1.0, 2, 4, 5]]), "labels": torch.tensor([0]), "masks": masks}]
    aug = SegmentAugment(hflip=True, jitter=0.0)
    flipped = [aug(x, t) for _ in range(40)]
    seen = {tuple(o[1][0]["boxes"][0].tolist()) for o in flipped}
    assert seen == {(1.0, 2.0, 4.0, 5.0), (6.0, 2.0, 9.0, 5.0)}  # both outcomes occur in 40 draws
    for out_x, out_t in flipped:
        assert torch.equal(out_t[0]["masks"][0].bool(), out_x[0, 0] > 0)


def test_a_bad_mask_in_a_split_folder_names_that_splits_annotation_file(seg_scenes, tmp_path):
    import shutil

    root = shutil.copytree(seg_scenes, tmp_path / "scenes")
    path = root / "annotations" / "instances_val.json"
    doc = json.loads(path.read_text())
    j = len(doc["annotations"]) - 1  # the last object of the last image with objects
    doc["annotations"][j]["segmentation"] = {"size": [48, 48], "counts": _rle(np.zeros((48, 48), bool))["counts"]}
    path.write_text(json.dumps(doc))
    name = next(i["file_name"] for i in doc["images"] if i["id"] == doc["annotations"][j]["image_id"])
    k = sum(a["image_id"] == doc["annotations"][j]["image_id"] for a in doc["annotations"][:j])
    with pytest.raises(LabelError, match="an empty mask") as e:
        _load(root)
    assert f"{path}:annotations[{j}] (object {k} of {Path(name).name})" in str(e.value)
