"""Face alignment: the 5 MTCNN landmarks mapped by a similarity transform (rotation, uniform scale, shift) onto a
canonical template, and the face resampled into a square crop where the eyes, nose and mouth sit at fixed places.

The template is the widely used 112×112 one of ArcFace / InsightFace (Deng et al. 2019), scaled to the crop size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# (x, y) in a 112×112 crop: the eye, the other eye, the nose tip, the two mouth corners (left to right in the image)
TEMPLATE_112 = torch.tensor(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def similarity(src: Tensor, dst: Tensor) -> Tensor:
    """The least-squares similarity transform taking points src Tensor[P, 2] to dst Tensor[P, 2] (P ≥ 2).

    Returns:
        Tensor[2, 3]: ``[[a, -b, tx], [b, a, ty]]``, so that ``dst ≈ src @ M[:, :2].T + M[:, 2]``.
    """
    x, y = src[:, 0].double(), src[:, 1].double()
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows = torch.cat([torch.stack([x, -y, one, zero], 1), torch.stack([y, x, zero, one], 1)])  # [2P, 4]
    a, b, tx, ty = torch.linalg.lstsq(rows, torch.cat([dst[:, 0], dst[:, 1]]).double()[:, None]).solution[:, 0]
    return torch.stack([torch.stack([a, -b, tx]), torch.stack([b, a, ty])]).float()


def _homogeneous(m: Tensor) -> Tensor:
    """Tensor[2, 3] affine -> Tensor[3, 3]."""
    return torch.cat([m, torch.tensor([[0.0, 0.0, 1.0]])])


def _to_normalized(w: int, h: int) -> Tensor:
    """Pixel coordinates (pixel centres at 0, 1, …) -> ``affine_grid``'s [-1, 1] (align_corners=False), Tensor[3, 3]."""
    return torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])


def align_face(image: Tensor, landmarks: Tensor, size: int = 112) -> Tensor:
    """Crop one face, aligned: uint8 image Tensor[C, H, W] and its 5 landmarks Tensor[5, 2] (x, y pixels) ->
    uint8 Tensor[C, size, size] with the landmarks on the template (bilinear; zeros outside the image)."""
    dst = TEMPLATE_112 * (size / 112)
    m = similarity(landmarks.float(), dst)  # image pixels -> crop pixels
    h, w = image.shape[-2:]
    crop_to_image = torch.linalg.inv(_homogeneous(m))
    theta = (_to_normalized(w, h) @ crop_to_image @ torch.linalg.inv(_to_normalized(size, size)))[:2]
    grid = F.affine_grid(theta[None], [1, image.shape[0], size, size], align_corners=False)
    out = F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)
