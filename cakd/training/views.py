"""Image geometry, batched on the images' device: torchvision's Resize and CenterCrop as tensor operations (the
models' input pipelines use them too), and the student's views (report section 4.1): resize (optional, bicubic) ->
zero-pad (optional) -> crop -> optional horizontal flip. The paper profile's 32 -> 256 -> random 224 crop has
33 x 33 x 2 = 2,178 views per image, the consistent profile's pad-4 / crop-32 exactly 162. Each sampled view carries its
id, so teacher logits can be cached per (image, view); evaluation uses the centred, un-flipped view."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..definitions.config import Views
from ..definitions.networks import Interpolation


def resize(images: Tensor, size: int, interpolation: Interpolation) -> Tensor:
    """Batched Resize((size, size)). Bicubic overshoots [0, 1]; PIL clamps by storing uint8, so do we."""
    out = F.interpolate(images, size=(size, size), mode=interpolation, align_corners=False)
    return out.clamp_(0, 1) if interpolation == "bicubic" else out


def center_crop(images: Tensor, size: int) -> Tensor:
    """torchvision's CenterCrop: top-left corner at round((H - size) / 2)."""
    top, left = round((images.shape[-2] - size) / 2), round((images.shape[-1] - size) / 2)
    return images[..., top:top + size, left:left + size]


def random_views(n: int, views: Views, generator: torch.Generator) -> Tensor:
    """n view ids, uniform over the views (drawn on the CPU generator, for reproducibility)."""
    if views.augment == "none":
        return centre_views(n, views)
    return torch.randint(0, views.count, (n,), generator=generator)


def centre_views(n: int, views: Views) -> Tensor:
    return torch.full((n,), views.centre, dtype=torch.long)


def apply_views(images: Tensor, view_ids: Tensor | None, views: Views, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 [B,3,32,32] -> float [B,3,crop,crop] in [0,1]: resize, pad, crop and flip to the given view ids (None: the
    evaluation view, the centre crop). view id v: flip = v % 2, and v // 2 = dy * offsets + dx is the crop's top-left
    corner in the padded image. Two gathers (rows, then flipped-or-not columns), batched on the images' device."""
    x = images.to(dtype) / 255
    if views.resize and views.resize != x.shape[-1]:
        x = resize(x, views.resize, "bicubic")
    if views.pad:
        x = F.pad(x, (views.pad,) * 4)
    if view_ids is None:
        return center_crop(x, views.crop)
    view_ids = view_ids.to(images.device)
    flip, corner = view_ids % 2, view_ids // 2
    dy, dx = corner // views.offsets, corner % views.offsets
    b, c, crop = len(x), x.shape[1], views.crop
    ar = torch.arange(crop, device=x.device)
    rows = (dy[:, None] + ar)[:, None, :, None].expand(b, c, crop, x.shape[-1])
    cols = (dx[:, None] + torch.where(flip[:, None].bool(), crop - 1 - ar, ar))[:, None, None, :]
    return x.gather(2, rows).gather(3, cols.expand(b, c, crop, crop))


def eval_images(images: Tensor, views: Views, dtype: torch.dtype = torch.float32) -> Tensor:
    """The evaluation transform: resize, pad, centre crop (no randomness)."""
    return apply_views(images, None, views, dtype)
