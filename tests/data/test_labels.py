"""Box label formats: YOLO, COCO, Pascal VOC and CSV read, validated and written back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.images import BadImageError
from cnnkit.data.labels import (
    Instance,
    LabelError,
    LabelledImage,
    open_box_dataset,
    write_coco,
    write_csv,
    write_voc,
    write_yolo,
    yolo_label_path,
)
from cnnkit.errors import CnnkitError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools, numpy 2


def png(path: Path, width: int = 40, height: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def boxes(image: LabelledImage) -> list[tuple[int, tuple[float, ...]]]:
    return [(i.label, tuple(round(v, 3) for v in i.box)) for i in image.instances]


# --- hand-written datasets, one per format ----------------------------------------------------------------------


def yolo_dataset(root: Path, names: object = None) -> Path:
    """a.png (2 objects), b.png (empty label file) in train; c.png (1 object) in val; images 40×30."""
    for split, stem in (("train", "a"), ("train", "b"), ("val", "c")):
        png(root / "images" / split / f"{stem}.png")
    write(root / "labels/train/a.txt", "0 0.5 0.5 0.5 0.2\n1 0.25 0.25 0.5 0.5\n")
    write(root / "labels/train/b.txt", "")
    write(root / "labels/val/c.txt", "1 0.5 0.5 1.0 1.0\n")
    names = {0: "cat", 1: "dog"} if names is None else names
    return write(root / "data.yaml", json.dumps({"train": "images/train", "val": "images/val", "names": names}))


def coco_dataset(root: Path) -> Path:
    """annotations/instances_train2017.json: category ids 7, 3, 42; an iscrowd region; an image without objects."""
    png(root / "images/train2017/a.png")
    png(root / "images/train2017/b.png")
    doc = {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 11, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {
                "id": 2,
                "image_id": 10,
                "category_id": 3,
                "bbox": [0, 0, 40, 30],
                "segmentation": [[0, 0, 40, 0, 40, 30]],
            },
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [5, 5, 5, 5], "iscrowd": 1},
        ],
        "categories": [{"id": 7, "name": "bird"}, {"id": 3, "name": "dog"}, {"id": 42, "name": "unused"}],
    }
    return write(root / "annotations/instances_train2017.json", json.dumps(doc, indent=1))


VOC_XML = """<annotation>
  <filename>{filename}</filename>
  <size><width>40</width><height>30</height><depth>3</depth></size>
  <object>
    <name>dog</name><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{xmax}</xmax><ymax>30</ymax></bndbox>
  </object>
  <object>
    <name>cat</name>
    <bndbox><xmin>11</xmin><ymin>6</ymin><xmax>20</xmax><ymax>15</ymax></bndbox>
  </object>
</annotation>
"""


def voc_dataset(root: Path) -> Path:
    """a (train, via trainval.txt), b (val; its xml names a wrong filename, found by stem)."""
    png(root / "JPEGImages/a.jpg")
    png(root / "JPEGImages/b.png")
    write(root / "Annotations/a.xml", VOC_XML.format(filename="a.jpg", xmax=40))
    write(root / "Annotations/b.xml", VOC_XML.format(filename="renamed.png", xmax=25))
    write(root / "ImageSets/Main/trainval.txt", "a\n")
    write(root / "ImageSets/Main/val.txt", "b\n")
    write(root / "ImageSets/Main/cat_trainval.txt", "a  1\n")  # per-class lists are not splits
    return root


def csv_dataset(root: Path) -> Path:
    png(root / "img/a.png")
    png(root / "img/b.png")
    png(root / "img/c.png")
    rows = [
        "path,label,x,y,w,h,split",
        "img/a.png,zebra,1,2,10,5,train",
        "img/a.png,ant,0,0,40,30,train",
        "img/b.png,,,,,,train",
        "img/c.png,zebra,5,5,4,4,test",
    ]
    return write(root / "labels.csv", "\n".join(rows) + "\n")


# --- reading ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [{0: "cat", 1: "dog"}, ["cat", "dog"], {"1": "dog", "0": "cat"}])
def test_yolo_reads_pixels_names_and_empty_label_files(tmp_path, names):
    ds = open_box_dataset(yolo_dataset(tmp_path, names))
    assert (ds.format, ds.classes, list(ds.splits), ds.hflip) == ("yolo", ["cat", "dog"], ["train", "val"], None)
    a, b = ds.splits["train"]
    assert boxes(a) == [(0, (10.0, 12.0, 30.0, 18.0)), (1, (0.0, 0.0, 20.0, 15.0))]
    assert b.instances == [] and (b.width, b.height) == (40, 30)
    assert boxes(ds.splits["val"][0]) == [(1, (0.0, 0.0, 40.0, 30.0))]
    assert a.path == tmp_path / "images/train/a.png" and a.path.is_absolute()
    assert open_box_dataset(tmp_path).splits.keys() == ds.splits.keys()  # the folder holding data.yaml


def test_a_phone_photo_turned_by_exif_is_labelled_upright(tmp_path):
    """Stored 40 wide × 20 tall with orientation 6: shown (and decoded by cnnkit) 20 wide × 40 tall, which is how an
    annotation tool shows it, so a YOLO box normalised to the upright photo lands on the upright pixels."""
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "images/train/phone.jpg"
    photo.parent.mkdir(parents=True)
    Image.new("RGB", (40, 20), (90, 120, 150)).save(photo, exif=exif.tobytes())
    write(tmp_path / "labels/train/phone.txt", "0 0.5 0.25 0.5 0.25\n")  # upright: x 5..15, y 5..15
    write(tmp_path / "data.yaml", "path: .\ntrain: images/train\nnames: [cat]\n")
    [item] = open_box_dataset(tmp_path / "data.yaml").splits["train"]
    assert (item.width, item.height) == (20, 40)
    assert boxes(item) == [(0, (5.0, 5.0, 15.0, 15.0))]


def test_yolo_image_lists_polygons_root_and_hflip(tmp_path):
    root = tmp_path / "ds"
    png(root / "images/x.png", 20, 10)
    write(root / "labels/x.txt", "0 0.1 0.2 0.5 0.2 0.5 0.8\n")  # a polygon line (YOLO segmentation)
    write(root / "lists/train.txt", "../images/x.png\n")
    cfg = {"path": "ds", "train": "lists/train.txt", "names": ["blob"], "hflip": False}
    ds = open_box_dataset(write(tmp_path / "data.yml", json.dumps(cfg)))
    (x,) = ds.splits["train"]
    assert boxes(x) == [(0, (2.0, 2.0, 10.0, 8.0))] and ds.hflip is False
    assert x.instances[0].segmentation == [[2.0, 2.0, 10.0, 2.0, 10.0, 8.0]]
    assert yolo_label_path("/d/images/tr/images/x.png") == Path("/d/images/tr/labels/x.txt")  # the last /images/


def test_yolo_roboflow_export_with_parent_relative_splits(tmp_path):
    """Roboflow writes ``train: ../train/images`` in a data.yaml that sits beside ``train/``: read as Ultralytics
    reads it (the ``../`` dropped when that path does not exist)."""
    for split, stem in (("train", "a"), ("valid", "b")):
        png(tmp_path / split / "images" / f"{stem}.jpg", 40, 20)
        write(tmp_path / split / "labels" / f"{stem}.txt", "1 0.5 0.5 0.5 0.5\n")
    text = "train: ../train/images\nval: ../valid/images\n\nnc: 2\nnames: ['car', 'bus']\n\nroboflow:\n  version: 3\n"
    ds = open_box_dataset(write(tmp_path / "data.yaml", text))
    assert ds.classes == ["car", "bus"]
    assert {s: [(im.path.name, boxes(im)) for im in ims] for s, ims in ds.splits.items()} == {
        "train": [("a.jpg", [(1, (10.0, 5.0, 30.0, 15.0))])],
        "val": [("b.jpg", [(1, (10.0, 5.0, 30.0, 15.0))])],
    }


def test_yolo_image_without_a_label_file_has_no_objects_unless_no_image_has_one(tmp_path):
    """Ultralytics: 'if there are no objects in an image, no *.txt file is required'. A split where no image has a
    label file is the labels folder missing or misplaced: one line naming data.yaml and the path looked for."""
    yaml_path = yolo_dataset(tmp_path)
    (tmp_path / "labels/train/a.txt").unlink()
    png(tmp_path / "images/train/D.JPG")  # never had a label file
    ds = open_box_dataset(yaml_path)
    assert [(im.path.name, boxes(im)) for im in ds.splits["train"]] == [("D.JPG", []), ("a.png", []), ("b.png", [])]
    assert boxes(ds.splits["val"][0]) == [(1, (0.0, 0.0, 40.0, 30.0))] and ds.skipped == []
    (tmp_path / "labels/val/c.txt").unlink()
    for skip_bad in (False, True):  # a layout problem, not one bad image to skip
        with pytest.raises(LabelError, match=r"no label file for any of the 1 val images .*labels/val/c.txt") as info:
            open_box_dataset(yaml_path, skip_bad=skip_bad)
        assert "data.yaml" in str(info.value) and "\n" not in str(info.value)


def test_coco_maps_category_ids_in_id_order_and_finds_images(tmp_path):
    js = coco_dataset(tmp_path)
    for source in (js, tmp_path, tmp_path / "annotations"):
        ds = open_box_dataset(source)
        assert ds.format == "coco" and ds.classes == ["dog", "bird", "unused"]  # ids 3, 7, 42 -> 0, 1, 2
        assert list(ds.splits) == (["all"] if source == js else ["train"])
    a, b = ds.splits["train"]
    assert boxes(a) == [(1, (1.0, 2.0, 11.0, 7.0)), (0, (0.0, 0.0, 40.0, 30.0))]  # iscrowd=1 left out
    assert a.instances[1].segmentation == [[0, 0, 40, 0, 40, 30]] and a.instances[0].segmentation is None
    assert b.instances == [] and b.path == tmp_path / "images/train2017/b.png"


def _roboflow_split(folder: Path, files: list[str], anns: list[tuple[int, int, list[float]]]) -> None:
    """One split of Roboflow's COCO export: the images and ``_annotations.coco.json`` side by side, with the
    supercategory "fruits" listed as category 0, which no annotation uses."""
    cats = [{"id": 0, "name": "fruits", "supercategory": "none"}, {"id": 1, "name": "apple", "supercategory": "fruits"},
            {"id": 2, "name": "pear", "supercategory": "fruits"}]  # fmt: skip
    images = [{"id": i, "file_name": f, "width": 40, "height": 30} for i, f in enumerate(files)]
    for f in files:
        png(folder / f)
    annotations = [{"id": k, "image_id": i, "category_id": c, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
                   for k, (i, c, box) in enumerate(anns)]  # fmt: skip
    write(
        folder / "_annotations.coco.json",
        json.dumps({"categories": cats, "images": images, "annotations": annotations}),
    )


def test_a_roboflow_coco_export_opens_with_its_splits_and_without_the_supercategory(tmp_path):
    _roboflow_split(tmp_path / "train", ["a.jpg.rf.1.png", "b.png"], [(0, 2, [1, 2, 10, 5]), (1, 1, [0, 0, 8, 8])])
    _roboflow_split(tmp_path / "valid", ["c.png"], [(0, 1, [5, 5, 4, 4])])
    ds = open_box_dataset(tmp_path)
    assert ds.format == "coco" and ds.classes == ["apple", "pear"] and list(ds.splits) == ["train", "val"]
    a, b = ds.splits["train"]
    assert boxes(a) == [(1, (1.0, 2.0, 11.0, 7.0))] and boxes(b) == [(0, (0.0, 0.0, 8.0, 8.0))]
    assert a.path == tmp_path / "train" / "a.jpg.rf.1.png" and boxes(ds.splits["val"][0]) == [(0, (5.0, 5.0, 9.0, 9.0))]
    alone = open_box_dataset(tmp_path / "train")  # one split folder given by itself
    assert list(alone.splits) == ["all"] and alone.classes == ["apple", "pear"]


def test_yolo_folders_without_a_yaml_open_from_their_class_list(tmp_path):
    """LabelImg saves ``x.txt`` beside ``x.jpg`` with a ``classes.txt``; CVAT's "YOLO 1.1" the same with
    ``obj.names``; Label Studio ``images/`` and ``labels/`` beside ``classes.txt``. Each is one split of every
    image under the folder; an image with no label file has no objects."""
    flat = tmp_path / "labelimg"
    png(flat / "a.jpg", 40, 20)
    png(flat / "b.jpg", 40, 20)
    write(flat / "a.txt", "1 0.5 0.5 0.5 0.5\n")
    write(flat / "classes.txt", "car\nbus\n\n")
    cvat = tmp_path / "cvat"
    png(cvat / "obj_train_data" / "c.png", 40, 20)
    write(cvat / "obj_train_data" / "c.txt", "0 0.25 0.5 0.5 1.0\n")
    write(cvat / "obj.names", "person\n")
    write(cvat / "train.txt", "data/obj_train_data/c.png\n")  # darknet's list, relative to darknet's folder
    studio = tmp_path / "studio"
    png(studio / "images" / "d.png", 40, 20)
    write(studio / "labels" / "d.txt", "0 0.5 0.5 1.0 1.0\n")
    write(studio / "classes.txt", "cat\n")
    write(studio / "notes.json", "{}")
    found = {}
    for root in (flat, cvat, studio):
        ds = open_box_dataset(root)
        found[root.name] = (ds.format, ds.classes, [(im.path.name, boxes(im)) for im in ds.splits["all"]])
    assert found == {
        "labelimg": ("yolo", ["car", "bus"], [("a.jpg", [(1, (10.0, 5.0, 30.0, 15.0))]), ("b.jpg", [])]),
        "cvat": ("yolo", ["person"], [("c.png", [(0, (0.0, 0.0, 20.0, 20.0))])]),
        "studio": ("yolo", ["cat"], [("d.png", [(0, (0.0, 0.0, 40.0, 20.0))])]),
    }
    write(flat / "a.txt", "2 0.5 0.5 0.5 0.5\n")  # a class id past the list: named with file and line
    with pytest.raises(LabelError, match=r"class id in 0\.\.1, found class id 2 in .*labelimg/a.txt:1;"):
        open_box_dataset(flat)
    write(studio / "classes.txt", "\n")
    with pytest.raises(LabelError, match="found no class names in .*studio/classes.txt; write the class names"):
        open_box_dataset(studio)
    (cvat / "obj_train_data" / "c.txt").unlink()  # no image has a label file: the labels are elsewhere
    with pytest.raises(LabelError, match=r"no label file for any of the 1 images .*obj.names; put each x.txt"):
        open_box_dataset(cvat, skip_bad=True)


def test_cvat_and_label_studio_coco_exports_open_from_their_folders(tmp_path):
    """CVAT writes ``annotations/instances_default.json`` beside ``images/``; Label Studio ``result.json`` whose
    file names start with ``images/``."""
    doc = {"images": [{"id": 1, "file_name": "e.png", "width": 40, "height": 30}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 5], "segmentation": [],
                            "iscrowd": 0, "attributes": {"occluded": False}}],
           "categories": [{"id": 1, "name": "car", "supercategory": ""}]}  # fmt: skip
    png(tmp_path / "cvat" / "images" / "e.png")
    write(tmp_path / "cvat" / "annotations" / "instances_default.json", json.dumps(doc))
    png(tmp_path / "studio" / "images" / "e.png")
    doc["images"][0]["file_name"] = "images/e.png"
    write(tmp_path / "studio" / "result.json", json.dumps(doc))
    for root in (tmp_path / "cvat", tmp_path / "studio"):
        ds = open_box_dataset(root)
        assert ds.format == "coco" and ds.classes == ["car"] and list(ds.splits) == ["all"]
        [im] = ds.splits["all"]
        assert im.path == root / "images" / "e.png" and boxes(im) == [(0, (1.0, 2.0, 11.0, 7.0))]


def test_tensorflow_object_detection_csv_and_roboflows_export_of_it(tmp_path):
    """``filename,width,height,class,xmin,ymin,xmax,ymax`` with pixel corners (labelImg's xml_to_csv, Roboflow's
    "TensorFlow Object Detection CSV": ``{train,valid,test}/_annotations.csv`` beside the images)."""
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    train = ["a.jpg,40,30,pear,1,2,11,7", "a.jpg,40,30,apple,0,0,40,30", "b.jpg,40,30,apple,5,5,9,9"]
    for split, rows in (("train", train), ("valid", ["c.jpg,40,30,pear,10,5,30,25"])):
        for name in {r.split(",")[0] for r in rows}:
            png(tmp_path / split / name)
        write(tmp_path / split / "_annotations.csv", header + "\n".join(rows) + "\n")
    ds = open_box_dataset(tmp_path)
    assert (ds.format, ds.classes, list(ds.splits)) == ("csv", ["apple", "pear"], ["train", "val"])
    assert [(im.path.name, boxes(im)) for im in ds.splits["train"]] == [
        ("a.jpg", [(1, (1.0, 2.0, 11.0, 7.0)), (0, (0.0, 0.0, 40.0, 30.0))]),
        ("b.jpg", [(0, (5.0, 5.0, 9.0, 9.0))]),
    ]
    assert [(im.path.name, boxes(im)) for im in ds.splits["val"]] == [("c.jpg", [(1, (10.0, 5.0, 30.0, 25.0))])]
    one = open_box_dataset(tmp_path / "valid" / "_annotations.csv")  # one file given by itself
    assert list(one.splits) == ["all"] and one.classes == ["pear"]
    assert list(open_box_dataset(tmp_path / "train").splits) == ["all"]
    write(tmp_path / "valid" / "_annotations.csv", header + "c.jpg,40,30,pear,30,5,10,25\n")  # xmax < xmin
    with pytest.raises(LabelError, match=r"valid/_annotations.csv:2"):
        open_box_dataset(tmp_path)
    write(tmp_path / "valid" / "_annotations.csv", header + "c.jpg,40,30,pear,ten,5,30,25\n")
    with pytest.raises(LabelError, match=r"expected four numbers, found xmin, ymin, xmax, ymax = \['ten'"):
        open_box_dataset(tmp_path)


@pytest.mark.parametrize("written", ["C:\\Users\\me\\data\\{}", "/home/someone/data/{}", "{}"])
def test_image_paths_written_on_another_machine_find_the_image_beside_the_labels(tmp_path, written):
    """Labelling tools on Windows (or another machine) write the full path of each image; the image is then looked
    for by its name where the labels put images."""
    coco = tmp_path / "coco"
    coco_dataset(coco)
    doc = json.loads((coco / "annotations/instances_train2017.json").read_text())
    for im in doc["images"]:
        im["file_name"] = written.format(im["file_name"])
    write(coco / "annotations/instances_train2017.json", json.dumps(doc))
    ds = open_box_dataset(coco)
    assert [im.path for im in ds.splits["train"]] == [
        (coco / "images/train2017" / n).resolve() for n in ("a.png", "b.png")
    ]
    png(tmp_path / "tf" / "a.jpg")
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    write(tmp_path / "tf" / "_annotations.csv", header + written.format("a.jpg") + ",40,30,pear,1,2,11,7\n")
    [found] = open_box_dataset(tmp_path / "tf").splits["all"]
    assert found.path == (tmp_path / "tf" / "a.jpg").resolve() and boxes(found) == [(0, (1.0, 2.0, 11.0, 7.0))]


def test_a_pascal_voc_download_opens_from_its_vocdevkit_root(tmp_path):
    voc_dataset(tmp_path / "VOCdevkit" / "VOC2012")
    for source in (tmp_path, tmp_path / "VOCdevkit"):
        ds = open_box_dataset(source)
        assert (ds.format, ds.classes, list(ds.splits)) == ("voc", ["cat", "dog"], ["train", "val"])
        assert ds.splits["train"][0].path == tmp_path / "VOCdevkit/VOC2012/JPEGImages/a.jpg"
    voc_dataset(tmp_path / "VOCdevkit" / "VOC2007")
    with pytest.raises(CnnkitError, match=r"one Pascal VOC year .*VOC2007.*VOC2012; pass the one to use"):
        open_box_dataset(tmp_path / "VOCdevkit")


def test_iscrowd_written_as_text_or_a_float_means_what_it_says(tmp_path):
    js = coco_dataset(tmp_path)
    doc = json.loads(js.read_text())
    doc["annotations"][0]["iscrowd"], doc["annotations"][1]["iscrowd"] = "0", 1.0  # as some converters write them
    js.write_text(json.dumps(doc))
    a, _ = open_box_dataset(js).splits["all"]
    assert boxes(a) == [(1, (1.0, 2.0, 11.0, 7.0))]  # "0" kept, 1.0 a crowd left out


def test_a_category_that_is_its_own_supercategory_stays_when_unused(tmp_path):
    js = coco_dataset(tmp_path)
    doc = json.loads(js.read_text())
    for c in doc["categories"]:
        c["supercategory"] = "unused"  # the unused category is the others' supercategory and its own (COCO's "person")
    js.write_text(json.dumps(doc))
    assert open_box_dataset(js).classes == ["dog", "bird", "unused"]


def test_coco_image_sizes_written_as_whole_floats_are_read_and_a_bad_file_name_is_one_line(tmp_path):
    js = coco_dataset(tmp_path)
    doc = json.loads(js.read_text())
    doc["images"][0].update(width=40.0, height=30.0)  # as a tool writing from float columns does
    js.write_text(json.dumps(doc))
    a, _ = open_box_dataset(js).splits["all"]
    assert (a.width, a.height) == (40, 30) and boxes(a) == [(1, (1.0, 2.0, 11.0, 7.0)), (0, (0.0, 0.0, 40.0, 30.0))]
    for image in ({"width": 40.5}, {"file_name": 7}):
        doc["images"][0].update({"width": 40, "file_name": "a.png", **image})
        js.write_text(json.dumps(doc))
        with pytest.raises(LabelError, match=r"a file_name and a positive integer width .*json:images\[0\]"):
            open_box_dataset(js)


def test_voc_is_one_based_with_sorted_names_and_splits(tmp_path):
    ds = open_box_dataset(voc_dataset(tmp_path))
    assert (ds.format, ds.classes, list(ds.splits)) == ("voc", ["cat", "dog"], ["train", "val"])
    (a,), (b,) = ds.splits["train"], ds.splits["val"]
    assert boxes(a) == [(1, (0.0, 0.0, 40.0, 30.0)), (0, (10.0, 5.0, 20.0, 15.0))]  # difficult kept
    assert b.path == tmp_path / "JPEGImages/b.png" and boxes(b)[0] == (1, (0.0, 0.0, 25.0, 30.0))


def test_voc_without_image_sets_is_one_split(tmp_path):
    voc_dataset(tmp_path)
    for f in (tmp_path / "ImageSets/Main").iterdir():
        f.unlink()
    assert {k: len(v) for k, v in open_box_dataset(tmp_path).splits.items()} == {"all": 2}


def test_csv_groups_rows_by_image(tmp_path):
    ds = open_box_dataset(csv_dataset(tmp_path))
    assert (ds.format, ds.classes, list(ds.splits)) == ("csv", ["ant", "zebra"], ["train", "test"])
    a, b = ds.splits["train"]
    assert boxes(a) == [(1, (1.0, 2.0, 11.0, 7.0)), (0, (0.0, 0.0, 40.0, 30.0))]
    assert b.instances == [] and boxes(ds.splits["test"][0]) == [(1, (5.0, 5.0, 9.0, 9.0))]


BOM = b"\xef\xbb\xbf"  # what Notepad and Excel's "CSV UTF-8" write before the text


@pytest.mark.parametrize(
    ("make", "label", "fmt"),
    [(yolo_dataset, "labels/train/a.txt", "yolo"), (yolo_dataset, "data.yaml", "yolo"),
     (coco_dataset, "annotations/instances_train2017.json", "coco"), (voc_dataset, "Annotations/a.xml", "voc"),
     (csv_dataset, "labels.csv", "csv")],
)  # fmt: skip
def test_a_utf8_byte_order_mark_is_not_part_of_the_labels(tmp_path, make, label, fmt):
    make(tmp_path)
    plain = open_box_dataset(_source(tmp_path, fmt))
    (tmp_path / label).write_bytes(BOM + (tmp_path / label).read_bytes())
    ds = open_box_dataset(_source(tmp_path, fmt))
    assert ds.classes == plain.classes and ds.skipped == []
    assert {s: [boxes(im) for im in ims] for s, ims in ds.splits.items()} == {
        s: [boxes(im) for im in ims] for s, ims in plain.splits.items()
    }
    assert any(im.instances for ims in ds.splits.values() for im in ims)


def test_box_sticking_out_by_rounding_is_clipped(tmp_path):
    png(tmp_path / "a.png")
    csv = write(tmp_path / "l.csv", "path,label,x,y,w,h\na.png,c,-0.5,0,40.8,30.4\n")
    assert boxes(open_box_dataset(csv).splits["all"][0]) == [(0, (0.0, 0.0, 40.0, 30.0))]


def test_unknown_layout_lists_the_formats(tmp_path):
    with pytest.raises(CnnkitError, match="YOLO data.yaml.*COCO.*VOC.*csv"):
        open_box_dataset(tmp_path)
    with pytest.raises(CnnkitError, match="found nothing"):
        open_box_dataset(tmp_path / "missing.json")


# --- bad labels: each raises naming file (and line), or is skipped and listed ----------------------------------


def _yolo_line(root: Path, text: str) -> None:
    write(root / "labels/train/a.txt", "0 0.5 0.5 0.5 0.2\n" + text)


def _coco_ann(root: Path, **ann: object) -> None:
    js = root / "annotations/instances_train2017.json"
    doc = json.loads(js.read_text())
    doc["annotations"].append({"id": 9, "image_id": 10, "category_id": 7, "bbox": [1, 1, 5, 5], **ann})
    js.write_text(json.dumps(doc))


def _voc_box(root: Path, xmin: str, xmax: str) -> None:
    xml = root / "Annotations/a.xml"
    xml.write_text(xml.read_text().replace("<xmin>11</xmin>", f"<xmin>{xmin}</xmin>").replace(">20<", f">{xmax}<"))


def _csv_row(root: Path, row: str) -> None:
    with open(root / "labels.csv", "a") as f:
        f.write(row + "\n")


def _voc_list_missing(root: Path) -> None:
    write(root / "ImageSets/Main/val.txt", "b\nghost\n")


def _yolo_list_missing_image(root: Path) -> None:
    write(root / "train.txt", "images/train/a.png\nimages/train/b.png\nimages/train/ghost.png\n")
    cfg = json.loads((root / "data.yaml").read_text())
    (root / "data.yaml").write_text(json.dumps({**cfg, "train": "train.txt"}))


BAD = {
    # name: (make dataset, break it, file named in the message, line, reason pattern)
    "yolo-field-count": (yolo_dataset, lambda r: _yolo_line(r, "1 0.5 0.5 0.2"), "a.txt", 2, "4 fields"),
    "yolo-non-number": (yolo_dataset, lambda r: _yolo_line(r, "1 0.5 x 0.2 0.2"), "a.txt", 2, "non-number"),
    "yolo-unknown-class": (yolo_dataset, lambda r: _yolo_line(r, "2 0.5 0.5 0.2 0.2"), "a.txt", 2, "class id 2"),
    "yolo-negative-size": (yolo_dataset, lambda r: _yolo_line(r, "0 0.5 0.5 -0.1 0.2"), "a.txt", 2, "size"),
    "yolo-outside": (yolo_dataset, lambda r: _yolo_line(r, "0 0.9 0.5 0.4 0.2"), "a.txt", 2, "outside 0-1"),
    "yolo-missing-image": (yolo_dataset, _yolo_list_missing_image, "train.txt", 3, "no image file .*ghost.png"),
    "coco-unknown-class": (
        coco_dataset,
        lambda r: _coco_ann(r, category_id=5),
        "json",
        "annotations[3]",
        "category_id 5",
    ),
    "coco-negative-size": (coco_dataset, lambda r: _coco_ann(r, bbox=[5, 5, -2, 3]), "json", "annotations[3]", "size"),
    "coco-outside": (coco_dataset, lambda r: _coco_ann(r, bbox=[30, 5, 15, 3]), "json", "annotations[3]", "outside"),
    "coco-malformed": (coco_dataset, lambda r: _coco_ann(r, bbox=[1, 2, 3]), "json", "annotations[3]", "bbox"),
    "coco-missing-image": (
        coco_dataset,
        lambda r: (r / "images/train2017/a.png").unlink(),
        "json",
        "images[0]",
        "no image file 'a.png'",
    ),
    "voc-outside": (voc_dataset, lambda r: _voc_box(r, "11", "45"), "a.xml", 8, "outside"),
    "voc-negative-size": (voc_dataset, lambda r: _voc_box(r, "11", "5"), "a.xml", 8, "size"),
    "voc-malformed": (voc_dataset, lambda r: _voc_box(r, "eleven", "20"), "a.xml", 8, "non-number"),
    "voc-missing-image": (voc_dataset, lambda r: (r / "JPEGImages/a.jpg").unlink(), "a.xml", None, "no image a.jpg"),
    "voc-missing-label": (voc_dataset, _voc_list_missing, "val.txt", 2, "no annotation file .*ghost.xml"),
    "csv-field-count": (csv_dataset, lambda r: _csv_row(r, "img/a.png,ant,1,1,2"), "labels.csv", 6, "number of fields"),
    "csv-non-number": (csv_dataset, lambda r: _csv_row(r, "img/a.png,ant,1,1,two,2,train"), "labels.csv", 6, "x, y"),
    "csv-negative-size": (csv_dataset, lambda r: _csv_row(r, "img/a.png,ant,1,1,-2,2,train"), "labels.csv", 6, "size"),
    "csv-outside": (csv_dataset, lambda r: _csv_row(r, "img/a.png,ant,1,25,2,9,train"), "labels.csv", 6, "outside"),
    "csv-missing-image": (csv_dataset, lambda r: _csv_row(r, "img/z.png,ant,1,1,2,2,train"), "labels.csv", 6, "z.png"),
    "csv-bad-split": (csv_dataset, lambda r: _csv_row(r, "img/y.png,ant,1,1,2,2,dev"), "labels.csv", 6, "split 'dev'"),
}


# Cases that add a bad entry (rather than break an existing image): skipping it keeps every good image.
ADDED = {"yolo-missing-image", "voc-missing-label", "csv-field-count", "csv-missing-image", "csv-bad-split"}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_label_names_file_and_line_or_is_skipped(tmp_path, case):
    make, corrupt, file, line, reason = BAD[case]
    good = open_box_dataset(make(tmp_path))
    corrupt(tmp_path)
    with pytest.raises(LabelError, match=reason) as info:
        open_box_dataset(_source(tmp_path, good.format))
    message = str(info.value)
    assert file in message and "--skip-bad" in message and "\n" not in message
    if line is not None:
        assert f":{line}" in message
    ds = open_box_dataset(_source(tmp_path, good.format), skip_bad=True)
    assert len(ds.skipped) == 1 and file in ds.skipped[0][0]
    kept = sum(map(len, ds.splits.values()))
    assert kept == sum(map(len, good.splits.values())) - (case not in ADDED)  # the bad image, or the added entry


def _source(root: Path, fmt: str) -> Path:
    return {"yolo": root / "data.yaml", "coco": root, "voc": root, "csv": root / "labels.csv"}[fmt]


def test_unreadable_image_header_is_a_bad_image(tmp_path):
    yolo_dataset(tmp_path)
    (tmp_path / "images/train/a.png").write_bytes(b"not a png")
    with pytest.raises(BadImageError, match="a.png"):
        open_box_dataset(tmp_path)
    ds = open_box_dataset(tmp_path, skip_bad=True)
    assert [p for p, _ in ds.skipped] == [str(tmp_path / "images/train/a.png")]
    assert [im.path.name for im in ds.splits["train"]] == ["b.png"]


def test_structural_problems_name_the_file(tmp_path):
    yolo_dataset(tmp_path, names={0: "cat", 2: "dog"})
    with pytest.raises(LabelError, match="names: .*data.yaml"):
        open_box_dataset(tmp_path)
    write(tmp_path / "bad.json", '{"images": [\n oops')
    with pytest.raises(LabelError, match=r"invalid JSON .*bad.json:2"):
        open_box_dataset(tmp_path / "bad.json")
    write(tmp_path / "h.csv", "file,label\n")
    with pytest.raises(LabelError, match=r"columns .*h.csv:1"):
        open_box_dataset(tmp_path / "h.csv")


# --- writing: a round trip through each format gives the same boxes and classes --------------------------------


def sample_splits(tmp_path: Path) -> dict[str, list[LabelledImage]]:
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 3), ("val", 2)):
        splits[split] = []
        for i in range(n):
            path = png(tmp_path / "src" / split / f"im{i}.png", 50, 40)
            instances = []
            for _ in range(i):  # im0 has no objects
                x1, y1 = rng.uniform(0, 30), rng.uniform(0, 20)
                x2, y2 = x1 + rng.uniform(1, 20), y1 + rng.uniform(1, 20)
                mask = np.zeros((40, 50), dtype=bool)
                mask[int(y1) : int(y2), int(x1) : int(x2)] = True
                instances.append(Instance(int(rng.integers(3)), (x1, y1, x2, y2), mask))
            splits[split].append(LabelledImage(path, 50, 40, instances))
    return splits


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc", "csv"])
def test_round_trip(tmp_path, fmt):
    classes = ["ant", "bee", "cat"]
    splits = sample_splits(tmp_path)
    out = tmp_path / "out"
    writer = {"yolo": write_yolo, "coco": write_coco, "voc": write_voc, "csv": write_csv}[fmt]
    ds = open_box_dataset(writer(out / "labels.csv" if fmt == "csv" else out, classes, splits))
    used = sorted({classes[i.label] for ims in splits.values() for im in ims for i in im.instances})
    assert ds.classes == (classes if fmt in ("yolo", "coco") else used)  # VOC and CSV know only the names used
    assert list(ds.splits) == list(splits) and ds.skipped == []
    for split, images in splits.items():
        for want, got in zip(images, ds.splits[split]):
            assert (got.width, got.height, len(got.instances)) == (want.width, want.height, len(want.instances))
            for w, g in zip(want.instances, got.instances):
                assert ds.classes[g.label] == classes[w.label]
                np.testing.assert_allclose(g.box, w.box, atol=1e-3)
            if fmt == "coco":
                from pycocotools import mask as mask_utils

                for w, g in zip(want.instances, got.instances):
                    np.testing.assert_array_equal(mask_utils.decode(g.segmentation).astype(bool), w.segmentation)


def test_write_links_images_into_the_layout_and_keeps_hflip(tmp_path):
    splits = sample_splits(tmp_path)
    yaml_path = write_yolo(tmp_path / "y", ["ant", "bee", "cat"], splits, hflip=False)
    assert (tmp_path / "y/images/val/im1.png").read_bytes() == splits["val"][1].path.read_bytes()
    assert (tmp_path / "y/labels/train/im0.txt").read_text() == ""
    assert open_box_dataset(yaml_path).hflip is False
    assert write_coco(tmp_path / "c", ["a", "b", "c"], {"all": splits["train"]}).name == "instances_all.json"
    assert list(open_box_dataset(tmp_path / "c/annotations/instances_all.json").splits) == ["all"]
