"""Batch augmentations on uint8 image tensors (B, C, H, W), on CPU or GPU alike.

`Augmenter.weak` is FixMatch's weak view (random horizontal flip, reflect-pad
and random crop); `Augmenter.strong` adds FixMatch's RandAugment and Cutout.
Every random choice is drawn per sample, for the whole batch at once, from
torch's global generator on the images' device, so `torch.manual_seed` (or
saving and restoring the CPU/CUDA RNG state) makes augmentation reproducible.

RandAugment as in FixMatch (Sohn et al., 2020, appendix table "RandAugment"),
whose ranges kekmodel/FixMatch-pytorch `fixmatch_augment_pool` also uses. Each
sample draws `randaugment_ops` ops uniformly from the 14 below, each with its
own magnitude drawn uniformly from the op's range:

    AutoContrast, Equalize, Identity   no magnitude
    Brightness, Color, Contrast,       enhancement factor in [0.05, 0.95]
      Sharpness                          (0 gives the degenerate image, 1 the original)
    Posterize                          bits kept in {4, ..., 8}
    Solarize                           threshold in [0, 256): values >= it are inverted
                                         (the paper's [0, 1] on the 8-bit scale)
    Rotate                             angle in [-30, 30] degrees
    ShearX, ShearY                     shear in [-0.3, 0.3]
    TranslateX, TranslateY             shift in [-0.3, 0.3] of the image side

then Cutout: a gray (127) square whose side is drawn in [0, 0.5] of the image
side (the paper's range; `cutout_fraction` sets its top), centred anywhere and
clipped at the borders. Geometric ops use nearest-neighbour sampling with a
black fill, like PIL's defaults in both references, and act about the image
centre. Unlike kekmodel's version, every drawn op is applied (no extra coin
flip per op) and magnitudes are continuous, as in the paper's description.

Shapes are fixed and nothing waits for the device: every op runs on the whole
batch and each sample keeps its own op's result, so both views trace into one
graph (`torch.compile(..., fullgraph=True)`) inside a compiled training step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as tvf

CUTOUT_FILL = 127


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


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def blend(images: torch.Tensor, degenerate: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance with one factor per sample: degenerate at 0, original at 1."""
    factors = _per_sample(factors.float())
    mixed = factors * images.float() + (1 - factors) * degenerate.float()
    return mixed.round().clamp(0, 255).to(torch.uint8)


def mean_degenerate(images: torch.Tensor) -> torch.Tensor:
    """The mean luma of each sample, rounded down (torchvision's `Contrast` degenerate)."""
    mean = tvf.rgb_to_grayscale(images).float().mean(dim=(-3, -2, -1), keepdim=True)
    return mean.to(torch.uint8)


def blur_degenerate(images: torch.Tensor) -> torch.Tensor:
    """PIL's smoothing filter (1 around, 5 in the centre, over 13) rounded inside,
    the image on the border (`Sharpness` degenerate), as torchvision's conv but cheaper."""
    if min(images.shape[-2:]) <= 2:
        return images
    wide = images.to(torch.int16)
    columns = wide[..., :-2, :] + wide[..., 1:-1, :] + wide[..., 2:, :]
    weighted = columns[..., :-2] + columns[..., 1:-1] + columns[..., 2:] + 4 * wide[..., 1:-1, 1:-1]
    blurred = images.clone()
    # weighted / 13 is never a tie (13 is odd), so float rounding is exact
    blurred[..., 1:-1, 1:-1] = (weighted.float() / 13).round()
    return blurred


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each sample onto [0, 255], truncating, as
    torchvision's `autocontrast` does; a flat channel is left as it is."""
    values = images.float()
    low = values.amin(dim=(-2, -1), keepdim=True)
    high = values.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    scale = (high - low) * (1.0 / 255)
    stretched = (values - torch.where(flat, 0.0, low)) / torch.where(flat, 1.0, scale)
    return stretched.clamp(0, 255).to(torch.uint8)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top `bits` bits of every value, one bit count per sample."""
    masks = (255 << (8 - bits.long())) & 255
    return images & _per_sample(masks.to(torch.uint8))


def solarize(images: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Invert values at or above the sample's threshold (PIL and torchvision convention)."""
    return images ^ (images >= _per_sample(thresholds)).to(torch.uint8) * 255  # x ^ 255 == 255 - x


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
    warped = nnf.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return warped.to(torch.uint8)


PIXEL_OPS: dict[str, RandAugmentOp] = {
    "AutoContrast": RandAugmentOp(lambda images, _: autocontrast(images)),
    "Equalize": RandAugmentOp(lambda images, _: tvf.equalize(images)),
    "Identity": RandAugmentOp(lambda images, _: images),
    # floor of a draw in [4, 9) gives each bit count 4..8 the same chance
    "Posterize": RandAugmentOp(lambda images, bits: posterize(images, bits.floor()), 4, 9),
    "Solarize": RandAugmentOp(solarize, 0, 256),
}
ENHANCEMENTS: dict[str, RandAugmentOp] = {
    "Brightness": RandAugmentOp(torch.zeros_like, 0.05, 0.95),
    "Color": RandAugmentOp(tvf.rgb_to_grayscale, 0.05, 0.95),  # luma rounded down, as PIL
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
# A drawn op index i means RANDAUGMENT_OPS[i]; this order keeps the views a seed gave before the tables split.
RANDAUGMENT_OPS: tuple[str, ...] = (*sorted({**PIXEL_OPS, **ENHANCEMENTS}), *GEOMETRIC_OPS)


def _pick(candidates: Sequence[torch.Tensor], choices: torch.Tensor) -> torch.Tensor:
    """Per sample i, `candidates[choices[i]][i]` (candidates broadcast to one
    shape): one stack and gather, cheaper in eager mode than a `where` per candidate."""
    stacked = torch.stack(torch.broadcast_tensors(*candidates))
    return stacked[choices, torch.arange(len(choices), device=choices.device)]


def _groups(op_indices: torch.Tensor, groups: Sequence[Sequence[str]]) -> torch.Tensor:
    """Per sample, the position in `groups` of the group holding the op it drew,
    or `len(groups)` for an op in none of them."""
    position = {name: index for index, group in enumerate(groups) for name in group}
    table = [position.get(name, len(groups)) for name in RANDAUGMENT_OPS]
    return torch.tensor(table, device=op_indices.device)[op_indices]


def randaugment_step(images: torch.Tensor, op_indices: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Apply to each sample the op `RANDAUGMENT_OPS[op_indices[i]]` at the point
    `levels[i]` in [0, 1] of that op's magnitude range.

    Every op runs on the whole batch and each sample takes its own op's result;
    the enhancements share one blend (each sample with its op's degenerate
    image and factor), the geometric ops one warp (each with its op's matrix)."""
    enhancement = _groups(op_indices, [[name] for name in ENHANCEMENTS])
    degenerate = _pick([op.function(images) for op in ENHANCEMENTS.values()] + [images], enhancement)
    factors = _pick([op.magnitudes(levels) for op in ENHANCEMENTS.values()] + [levels], enhancement)
    enhanced = blend(images, degenerate, factors)

    identity = torch.eye(2, 3, device=images.device).expand(len(images), 2, 3)
    matrices = [op.function(op.magnitudes(levels)) for op in GEOMETRIC_OPS.values()] + [identity]
    warped = affine_warp(images, _pick(matrices, _groups(op_indices, [[name] for name in GEOMETRIC_OPS])))

    results = [op.function(images, op.magnitudes(levels)) for op in PIXEL_OPS.values()] + [enhanced, warped]
    return _pick(results, _groups(op_indices, [[name] for name in PIXEL_OPS] + [[*ENHANCEMENTS], [*GEOMETRIC_OPS]]))


def _reflect(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Index into a side of `size` pixels that reflect padding (edge not repeated) reads at `positions`."""
    return (size - 1) - ((size - 1) - positions.abs()).abs()


def cutout(images: torch.Tensor, sides: torch.Tensor, centres_y: torch.Tensor, centres_x: torch.Tensor) -> torch.Tensor:
    """Set to gray each sample's square of `sides` pixels centred at (y, x), clipped at the borders."""
    top, left = centres_y - sides // 2, centres_x - sides // 2
    rows = torch.arange(images.shape[-2], device=images.device)
    columns = torch.arange(images.shape[-1], device=images.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + sides)[:, None])
    in_columns = (columns >= left[:, None]) & (columns < (left + sides)[:, None])
    inside = (in_rows[:, :, None] & in_columns[:, None, :])[:, None]
    return images.masked_fill(inside, CUTOUT_FILL)


class Augmenter:
    """Weak and strong views and normalisation of uint8 batches (B, C, H, W).

    `mean` and `std` are per channel on the [0, 1] scale (`Dataset.channel_stats()`).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        hflip: bool = True,
        pad_fraction: float = 0.125,
        randaugment_ops: int = 2,
        cutout_fraction: float = 0.5,
    ):
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.hflip = hflip
        self.pad_fraction = pad_fraction
        self.randaugment_ops = randaugment_ops
        self.cutout_fraction = cutout_fraction

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(images / 255 - mean) / std per channel, as float32."""
        self._check(images)
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return images.float().div_(255).sub_(mean).div_(std)

    def weak(self, images: torch.Tensor) -> torch.Tensor:
        """Random horizontal flip (if `hflip`) and pad-and-crop, normalised."""
        self._check(images)
        return self.normalize(self._flip_and_crop(images))

    def strong(self, images: torch.Tensor) -> torch.Tensor:
        """Weak's flip and crop, then RandAugment and Cutout per sample, normalised."""
        self._check(images)
        batch, _, height, width = images.shape
        if height != width:
            raise ValueError(f"strong augmentation needs square images, got {height}x{width}")
        augmented = self._flip_and_crop(images)
        device = images.device
        op_indices = torch.randint(len(RANDAUGMENT_OPS), (self.randaugment_ops, batch), device=device)
        levels = torch.rand(self.randaugment_ops, batch, device=device)
        for step_ops, step_levels in zip(op_indices, levels):
            augmented = randaugment_step(augmented, step_ops, step_levels)
        side_fractions, centre_y, centre_x = torch.rand(3, batch, device=device)
        sides = (side_fractions * self.cutout_fraction * height).round().long()
        augmented = cutout(augmented, sides, (centre_y * height).long(), (centre_x * width).long())
        return self.normalize(augmented)

    def _flip_and_crop(self, images: torch.Tensor) -> torch.Tensor:
        """Flip, reflect-pad and crop as one gather of source pixels per sample."""
        batch, channels, height, width = images.shape
        device = images.device
        columns = torch.arange(width, device=device).expand(batch, width)
        if self.hflip:
            flips = torch.rand(batch, device=device) < 0.5
            columns = torch.where(flips[:, None], width - 1 - columns, columns)
        pad = int(self.pad_fraction * height + 0.5)
        tops, lefts = torch.randint(2 * pad + 1, (2, batch), device=device)
        rows = _reflect(tops[:, None] - pad + torch.arange(height, device=device), height)
        columns = columns.gather(1, _reflect(lefts[:, None] - pad + torch.arange(width, device=device), width))
        sources = (rows[:, :, None] * width + columns[:, None, :]).view(batch, 1, height * width)
        return images.flatten(2).gather(2, sources.expand(-1, channels, -1)).view_as(images)

    def _check(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"expected uint8 images (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[1] != len(self.mean):
            raise ValueError(f"images have {images.shape[1]} channels but mean/std have {len(self.mean)}")

