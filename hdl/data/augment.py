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

Shapes are fixed and nothing waits for the device (`hdl.data.randaugment` runs
every op on the whole batch and each sample keeps its own op's result), so both
views trace into one graph (`torch.compile(..., fullgraph=True)`) inside a
compiled training step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hdl.data.randaugment import RANDAUGMENT_OPS, filled_in, randaugment_step

CUTOUT_FILL = 127


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
    return torch.where(inside, CUTOUT_FILL, images)


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
        return self._normalized(images.float())

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
        augmented = self._flip_and_crop(images).float()
        device = images.device
        op_indices = torch.randint(len(RANDAUGMENT_OPS), (self.randaugment_ops, batch), device=device)
        levels = torch.rand(self.randaugment_ops, batch, device=device)
        for step_ops, step_levels in zip(op_indices, levels):
            augmented = randaugment_step(augmented, step_ops, step_levels)
        side_fractions, centre_y, centre_x = torch.rand(3, batch, device=device)
        sides = (side_fractions * self.cutout_fraction * height).round().long()
        augmented = cutout(augmented, sides, (centre_y * height).long(), (centre_x * width).long())
        return self._normalized(augmented)

    def _normalized(self, values: torch.Tensor) -> torch.Tensor:
        mean = filled_in(self.mean, values.device).view(1, -1, 1, 1)
        std = filled_in(self.std, values.device).view(1, -1, 1, 1)
        return values.div(255).sub_(mean).div_(std)

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

