"""RandAugment's ops for `hdl.data.augment`, on float32 pixel values: whole
numbers in [0, 255] held as floats (B, C, H, W), which inductor's CPU code
vectorises (its uint8 arithmetic runs about 10x slower).

`randaugment_step` has fixed shapes and no host synchronisation: every op runs
on the whole batch and each sample keeps its own op's result. Each op gives the
same pixels as torchvision's uint8 version (tests/test_augment.py checks this).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as tvf


class RandAugmentOp(NamedTuple):
    """What `function` takes and returns depends on the table the op is in:
    `PIXEL_OPS`: `function(images, magnitudes)` returns the changed images;
    `ENHANCEMENTS`: `function(images)` returns the degenerate images that the
    magnitude (the enhancement factor) blends with; `GEOMETRIC_OPS`:
    `function(magnitudes)` returns per-sample 2x3 affine matrices."""

    function: Callable[..., torch.Tensor]
    low: float = 0.0
    high: float = 0.0

    def magnitudes(self, levels: torch.Tensor) -> torch.Tensor:
        """Map levels in [0, 1] linearly onto [low, high]."""
        return self.low + levels * (self.high - self.low)


def filled_in(values: Sequence[float], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype, device=device)`` with each value filled in on ``device``:
    ``torch.tensor`` copies from the host, and on a GPU the host then waits for the device."""
    return torch.stack([torch.full((), value, dtype=dtype, device=device) for value in values])


def per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def blend(images: torch.Tensor, degenerate: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance with one factor per sample: degenerate at 0, original at 1."""
    factors = per_sample(factors.float())
    return (factors * images + (1 - factors) * degenerate).round().clamp(0, 255)


def grayscale_degenerate(images: torch.Tensor) -> torch.Tensor:
    """Luma rounded down, one channel (torchvision's and PIL's `Color` degenerate)."""
    return tvf.rgb_to_grayscale(images).floor()


def mean_degenerate(images: torch.Tensor) -> torch.Tensor:
    """Each sample's mean luma rounded down (torchvision's `Contrast` degenerate)."""
    return grayscale_degenerate(images).mean(dim=(-3, -2, -1), keepdim=True).floor()


def blur_degenerate(images: torch.Tensor) -> torch.Tensor:
    """PIL's smoothing filter (1 around, 5 in the centre, over 13) rounded inside,
    the image on the border (`Sharpness` degenerate), as torchvision's conv but cheaper."""
    if min(images.shape[-2:]) <= 2:
        return images
    columns = images[..., :-2, :] + images[..., 1:-1, :] + images[..., 2:, :]
    weighted = columns[..., :-2] + columns[..., 1:-1] + columns[..., 2:] + 4 * images[..., 1:-1, 1:-1]
    blurred = images.clone()
    blurred[..., 1:-1, 1:-1] = (weighted / 13).round()  # exact: the sums are whole, a 13th never a tie
    return blurred


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each sample onto [0, 255], truncating, as
    torchvision's `autocontrast` does; a flat channel is left as it is."""
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    scale = (high - low) * (1.0 / 255)
    return ((images - torch.where(flat, 0.0, low)) / torch.where(flat, 1.0, scale)).clamp(0, 255).trunc()


def equalize(images: torch.Tensor) -> torch.Tensor:
    """PIL's histogram equalisation of each channel of each sample, in torchvision's
    batched form; a channel with a single value is left as it is."""
    values = images.flatten(-2).long()
    histogram = torch.zeros(*values.shape[:-1], 256, dtype=torch.long, device=images.device)
    histogram = histogram.scatter_add(-1, values, torch.ones_like(values))
    cumulative = histogram.cumsum(-1)
    # PIL: lut[v] = (step // 2 + pixels below v) // step, step = (pixels not of the top value) // 255
    top_count = histogram.gather(-1, cumulative.argmax(-1, keepdim=True))
    step = (values.shape[-1] - top_count) // 255
    lut = nnf.pad((cumulative[..., :-1] + step // 2) // step.clamp(min=1), (1, 0)).clamp(max=255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=images.device))
    return lut.gather(-1, values).view_as(images).to(images.dtype)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` bits of every value, one bit count per sample."""
    quantum = per_sample(2 ** (8 - bits.float()))
    return (images / quantum).floor() * quantum


def solarize(images: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Invert values at or above the sample's threshold (PIL and torchvision convention)."""
    return torch.where(images >= per_sample(thresholds), 255 - images, images)


def rotation_matrices(degrees: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation, as PIL's `rotate` and `torch.rot90` turn."""
    radians = torch.deg2rad(degrees.float())
    cos, sin, zero = torch.cos(radians), torch.sin(radians), torch.zeros_like(radians)
    return torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2)


def _linear_matrices(magnitudes: torch.Tensor, row: int, column: int) -> torch.Tensor:
    matrices = torch.eye(2, 3, device=magnitudes.device).repeat(len(magnitudes), 1, 1)
    matrices[:, row, column] = magnitudes.float()
    return matrices


def shear_x_matrices(shears: torch.Tensor) -> torch.Tensor:
    return _linear_matrices(shears, 0, 1)


def shear_y_matrices(shears: torch.Tensor) -> torch.Tensor:
    return _linear_matrices(shears, 1, 0)


def translate_x_matrices(fractions: torch.Tensor) -> torch.Tensor:
    """Sample `fraction` of the width further right: the content moves left by it."""
    return _linear_matrices(2 * fractions, 0, 2)


def translate_y_matrices(fractions: torch.Tensor) -> torch.Tensor:
    return _linear_matrices(2 * fractions, 1, 2)


def affine_warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Warp each image by its own 2x3 matrix, which maps output to input
    coordinates normalised to [-1, 1] (square images); outside is black."""
    grid = nnf.affine_grid(matrices, list(images.shape), align_corners=False)
    return nnf.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


PIXEL_OPS: dict[str, RandAugmentOp] = {
    "AutoContrast": RandAugmentOp(lambda images, _: autocontrast(images)),
    "Equalize": RandAugmentOp(lambda images, _: equalize(images)),
    "Identity": RandAugmentOp(lambda images, _: images),
    # floor of a draw in [4, 9) gives each bit count 4..8 the same chance (float32 rounds the top level to 9)
    "Posterize": RandAugmentOp(lambda images, bits: posterize(images, bits.floor().clamp(max=8)), 4, 9),
    "Solarize": RandAugmentOp(solarize, 0, 256),
}
ENHANCEMENTS: dict[str, RandAugmentOp] = {
    "Brightness": RandAugmentOp(torch.zeros_like, 0.05, 0.95),
    "Color": RandAugmentOp(grayscale_degenerate, 0.05, 0.95),
    "Contrast": RandAugmentOp(mean_degenerate, 0.05, 0.95),
    "Sharpness": RandAugmentOp(blur_degenerate, 0.05, 0.95),
}
GEOMETRIC_OPS: dict[str, RandAugmentOp] = {
    "Rotate": RandAugmentOp(rotation_matrices, -30, 30),
    "ShearX": RandAugmentOp(shear_x_matrices, -0.3, 0.3),
    "ShearY": RandAugmentOp(shear_y_matrices, -0.3, 0.3),
    "TranslateX": RandAugmentOp(translate_x_matrices, -0.3, 0.3),
    "TranslateY": RandAugmentOp(translate_y_matrices, -0.3, 0.3),
}
# A drawn op index i means RANDAUGMENT_OPS[i]: alphabetical pixel ops, then geometric ones, as before the
# tables split, so a seed gives the same views as it did then.
RANDAUGMENT_OPS: tuple[str, ...] = (*sorted({**PIXEL_OPS, **ENHANCEMENTS}), *GEOMETRIC_OPS)


def _pick(candidates: Sequence[torch.Tensor], choices: torch.Tensor) -> torch.Tensor:
    """Per sample i, `candidates[choices[i]][i]`, as a sum weighted by one-hot
    choices: exact (the others weigh 0) and cheaper in eager mode than `where`."""
    weights = nnf.one_hot(choices, len(candidates)).T.float()
    picked = torch.zeros(torch.broadcast_shapes(*(candidate.shape for candidate in candidates)), device=choices.device)
    for candidate, weight in zip(candidates, weights):
        picked.addcmul_(candidate, weight.view(-1, *[1] * (candidate.ndim - 1)))
    return picked


def _stored(images: torch.Tensor) -> torch.Tensor:
    """`images` itself, as an identity view, which makes the compiler store the
    tensor once rather than recompute it (the previous step, the crop) inside
    every op that reads it (2-3x faster compiled on CPU)."""
    return images.as_strided(images.shape, images.stride())


def _groups(op_indices: torch.Tensor, groups: Sequence[Sequence[str]]) -> torch.Tensor:
    """Per sample, the position in `groups` of the group holding the op it drew,
    or `len(groups)` for an op in none of them."""
    position = {name: index for index, group in enumerate(groups) for name in group}
    table = [position.get(name, len(groups)) for name in RANDAUGMENT_OPS]
    return filled_in(table, op_indices.device, torch.int64)[op_indices]


def randaugment_step(images: torch.Tensor, op_indices: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Apply to each sample the op `RANDAUGMENT_OPS[op_indices[i]]` at the point
    `levels[i]` in [0, 1] of that op's magnitude range.

    Every op runs on the whole batch and each sample takes its own op's result;
    the enhancements share one blend (each sample with its op's degenerate
    image and factor), the geometric ops one warp (each with its op's matrix)."""
    images = _stored(images)
    enhancement = _groups(op_indices, [[name] for name in ENHANCEMENTS])
    degenerate = _pick([op.function(images) for op in ENHANCEMENTS.values()] + [images], enhancement)
    factors = _pick([op.magnitudes(levels) for op in ENHANCEMENTS.values()] + [levels], enhancement)
    enhanced = blend(images, degenerate, factors)

    identity = torch.eye(2, 3, device=images.device).expand(len(images), 2, 3)
    matrices = [op.function(op.magnitudes(levels)) for op in GEOMETRIC_OPS.values()] + [identity]
    warped = affine_warp(images, _pick(matrices, _groups(op_indices, [[name] for name in GEOMETRIC_OPS])))

    results = [op.function(images, op.magnitudes(levels)) for op in PIXEL_OPS.values()] + [enhanced, warped]
    return _pick(results, _groups(op_indices, [[name] for name in PIXEL_OPS] + [[*ENHANCEMENTS], [*GEOMETRIC_OPS]]))
