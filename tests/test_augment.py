import math

import pytest
import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2.functional as tvf
from torchvision.transforms.v2 import InterpolationMode

from hdl.data import augment, randaugment
from hdl.data.augment import Augmenter

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def random_images(batch: int, channels: int, size: int, device: str = "cpu") -> torch.Tensor:
    return torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8, device=device)


def pixel_augmenter(channels: int, **options) -> Augmenter:
    """Normalises to x / 255, so `to_pixels` recovers the uint8 values exactly."""
    return Augmenter(mean=(0.0,) * channels, std=(1.0,) * channels, **options)


def to_pixels(normalised: torch.Tensor) -> torch.Tensor:
    return (normalised * 255).round().to(torch.uint8)


def on_pixels(function, images: torch.Tensor, *args) -> torch.Tensor:
    """Run an op on the float pixel values of uint8 images and return uint8,
    checking that the values stayed whole numbers in [0, 255]."""
    out = function(images.float(), *args)
    assert torch.equal(out, out.round().clamp(0, 255))
    return out.to(torch.uint8)


def ramp(size: int) -> torch.Tensor:
    return torch.arange(size * size, dtype=torch.uint8).view(1, 1, size, size)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28), (1, 8)])
@pytest.mark.parametrize("view", ["weak", "strong"])
def test_views_are_normalised_float32_and_leave_the_input_alone(device, channels, size, view):
    mean, std = (CIFAR_MEAN, CIFAR_STD) if channels == 3 else ((0.2860,), (0.3530,))
    augmenter = Augmenter(mean=mean, std=std)
    images = random_images(16, channels, size, device)
    original = images.clone()

    output = getattr(augmenter, view)(images)

    assert output.shape == images.shape and output.dtype == torch.float32 and output.device == images.device
    lowest = (0 - torch.tensor(mean, device=device)) / torch.tensor(std, device=device)
    highest = (1 - torch.tensor(mean, device=device)) / torch.tensor(std, device=device)
    assert (output >= lowest.view(1, -1, 1, 1) - 1e-5).all() and (output <= highest.view(1, -1, 1, 1) + 1e-5).all()
    assert torch.equal(images, original)


def test_normalize_is_x_over_255_minus_mean_over_std():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 3, 1, 3).contiguous()
    output = Augmenter(CIFAR_MEAN, CIFAR_STD).normalize(images)
    for channel, (mean, std) in enumerate(zip(CIFAR_MEAN, CIFAR_STD)):
        expected = torch.tensor([(0 - mean) / std, (0.2 - mean) / std, (1 - mean) / std])
        torch.testing.assert_close(output[:, channel, 0], expected.expand(2, 3), rtol=0, atol=1e-6)


def test_inputs_that_break_the_contract_are_refused():
    augmenter = Augmenter(CIFAR_MEAN, CIFAR_STD)
    with pytest.raises(TypeError, match="uint8"):
        augmenter.weak(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        augmenter.weak(random_images(2, 1, 32))
    with pytest.raises(ValueError, match="square"):
        augmenter.strong(torch.zeros(2, 3, 32, 16, dtype=torch.uint8))


def test_weak_crop_is_a_window_of_the_reflect_padded_image_at_a_random_offset():
    torch.manual_seed(0)
    image = random_images(1, 3, 32)
    batch = image.expand(64, -1, -1, -1)
    crops = to_pixels(pixel_augmenter(3, hflip=False).weak(batch))

    padded = tvf.pad(image, [4], padding_mode="reflect")[0]
    windows = {(top, left): padded[:, top : top + 32, left : left + 32] for top in range(9) for left in range(9)}
    offsets = [[offset for offset, window in windows.items() if torch.equal(crop, window)] for crop in crops]
    assert all(len(found) == 1 for found in offsets)
    assert len({found[0] for found in offsets}) > 20


def test_weak_flip_mirrors_about_half_of_the_samples():
    torch.manual_seed(0)
    image = random_images(1, 1, 28)
    flipped = to_pixels(pixel_augmenter(1, pad_fraction=0.0).weak(image.expand(200, -1, -1, -1)))
    is_mirror = torch.tensor([torch.equal(sample, image[0].flip(-1)) for sample in flipped])
    is_same = torch.tensor([torch.equal(sample, image[0]) for sample in flipped])
    assert (is_mirror ^ is_same).all()
    assert 60 < is_mirror.sum() < 140


def test_strong_draws_its_own_ops_and_magnitudes_for_every_sample():
    torch.manual_seed(0)
    identical = random_images(1, 3, 32).expand(32, -1, -1, -1)
    views = pixel_augmenter(3, hflip=False, pad_fraction=0.0, cutout_fraction=0.0).strong(identical)
    distinct = {tuple(view.flatten().tolist()) for view in views}
    assert len(distinct) > 28


@pytest.mark.parametrize("view", ["weak", "strong"])
def test_seeding_torch_makes_views_reproducible(view):
    images = random_images(8, 3, 16)
    augmenter = Augmenter(CIFAR_MEAN, CIFAR_STD)

    torch.manual_seed(7)
    first = getattr(augmenter, view)(images)
    state = torch.get_rng_state()
    after_first = getattr(augmenter, view)(images)
    torch.manual_seed(7)
    again = getattr(augmenter, view)(images)
    torch.set_rng_state(state)
    restored = getattr(augmenter, view)(images)
    torch.manual_seed(8)
    other_seed = getattr(augmenter, view)(images)

    assert torch.equal(first, again)
    assert torch.equal(after_first, restored)
    assert not torch.equal(first, other_seed)


def test_cutout_grays_a_square_clipped_at_the_border():
    images = torch.zeros(2, 1, 10, 10, dtype=torch.uint8)
    centres_y, centres_x = torch.tensor([5, 0]), torch.tensor([5, 9])
    out = augment.cutout(images, sides=torch.tensor([4, 4]), centres_y=centres_y, centres_x=centres_x)
    expected = torch.zeros(2, 1, 10, 10, dtype=torch.uint8)
    expected[0, :, 3:7, 3:7] = augment.CUTOUT_FILL
    expected[1, :, 0:2, 7:10] = augment.CUTOUT_FILL
    assert torch.equal(out, expected)


def test_strong_applies_cutout_with_a_side_up_to_the_fraction():
    torch.manual_seed(0)
    augmenter = pixel_augmenter(3, hflip=False, pad_fraction=0.0, randaugment_ops=0, cutout_fraction=0.5)
    white = torch.full((200, 3, 32, 32), 255, dtype=torch.uint8)
    grayed = (to_pixels(augmenter.strong(white)) == augment.CUTOUT_FILL).all(1).sum((1, 2))
    assert grayed.max() <= 16 * 16
    assert grayed.float().mean() > 20


def test_solarize_inverts_values_at_or_above_each_samples_threshold():
    images = ramp(16).expand(3, -1, -1, -1)
    out = on_pixels(randaugment.solarize, images, torch.tensor([128.0, 0.0, 256.0]))
    assert torch.equal(out[0], torch.where(images[0] >= 128, 255 - images[0], images[0]))
    assert torch.equal(out[1], 255 - images[1])
    assert torch.equal(out[2], images[2])


def test_posterize_keeps_the_top_bits_of_each_sample():
    images = ramp(16).expand(3, -1, -1, -1)
    out = on_pixels(randaugment.posterize, images, torch.tensor([4, 6, 8]))
    assert torch.equal(out[0], images[0] & 0b11110000)
    assert torch.equal(out[1], images[1] & 0b11111100)
    assert torch.equal(out[2], images[2])


def enhance(name: str, images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return on_pixels(lambda values: randaugment.blend(values, randaugment.ENHANCEMENTS[name].function(values), factors), images)


def test_enhancements_interpolate_between_degenerate_and_original():
    torch.manual_seed(0)
    images = random_images(2, 3, 8)
    for name in randaugment.ENHANCEMENTS:
        assert torch.equal(enhance(name, images, torch.ones(2)), images)

    assert torch.equal(enhance("Brightness", images, torch.full((2,), 0.5)), (images.float() / 2).round().to(torch.uint8))
    gray = enhance("Color", images, torch.zeros(2))
    assert torch.equal(gray, gray[:, :1].expand_as(gray))
    flat = enhance("Contrast", images, torch.zeros(2))
    assert torch.equal(flat, flat[:, :, :1, :1].expand_as(flat))

    spike = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    spike[..., 2, 2] = 255
    blurred = enhance("Sharpness", spike, torch.zeros(1))[0, 0]
    assert blurred[2, 2] == round(255 * 5 / 13) and blurred[1, 1] == round(255 / 13) and blurred[0, 0] == 0


def test_color_leaves_grayscale_images_alone():
    images = random_images(2, 1, 8)
    assert torch.equal(enhance("Color", images, torch.tensor([0.05, 0.5])), images)


def test_autocontrast_and_equalize_stretch_a_dim_image_to_the_full_range():
    dim = (100 + torch.arange(32 * 32) % 20).to(torch.uint8).view(1, 1, 32, 32).expand(1, 3, -1, -1)
    for op in ("AutoContrast", "Equalize"):
        out = on_pixels(randaugment.PIXEL_OPS[op].function, dim, torch.zeros(1))
        assert out.max() >= 250 and out.min() < 20


def test_rotating_by_90_degrees_matches_rot90():
    images = random_images(4, 3, 32)
    rotated = on_pixels(randaugment.affine_warp, images, randaugment.rotation_matrices(torch.full((4,), 90.0)))
    assert torch.equal(rotated, torch.rot90(images, 1, dims=(-2, -1)))


def test_translation_shifts_by_the_fraction_of_the_side_and_fills_black():
    image = ramp(8)
    moved = on_pixels(randaugment.affine_warp, image, randaugment.translate_x_matrices(torch.tensor([0.25])))
    assert torch.equal(moved[..., :6], image[..., 2:])
    assert (moved[..., 6:] == 0).all()
    moved = on_pixels(randaugment.affine_warp, image, randaugment.translate_y_matrices(torch.tensor([-0.25])))
    assert torch.equal(moved[..., 2:, :], image[..., :6, :])


def test_shear_shifts_rows_in_proportion_to_their_distance_from_the_centre():
    image = ramp(8)
    sheared = on_pixels(randaugment.affine_warp, image, randaugment.shear_x_matrices(torch.tensor([0.25])))[0, 0]
    assert torch.equal(sheared[2:6], image[0, 0, 2:6])
    assert torch.equal(sheared[0, 1:], image[0, 0, 0, :7])
    assert torch.equal(sheared[7, :7], image[0, 0, 7, 1:])
    sheared_y = on_pixels(randaugment.affine_warp, image.transpose(-2, -1), randaugment.shear_y_matrices(torch.tensor([0.25])))
    assert torch.equal(sheared_y[0, 0].T, sheared)


# The augmentations as they were before they became fixed-shape batched ops
# (per-op sample selection with nonzero, torchvision's ops), frozen as the reference
# that the batched code must reproduce pixel for pixel from the same draws.
# Nothing here calls hdl's ops: the geometric ops and Cutout are torchvision's, one image at a time.
# The two sample the same points; a point within float32 rounding of halfway between two pixels may
# round either way (2-4 pixels in 1 of 500 random 32x32 images per op differ): the seeded draws below hit none.
def reference_blend(images, degenerate, factors):
    factors = factors.float().view(-1, 1, 1, 1)
    return (factors * images.float() + (1 - factors) * degenerate.float()).round().clamp(0, 255).to(torch.uint8)


def one_by_one(op):
    """A batch op from ``op(image, magnitude)`` on single images, each with its own magnitude."""
    return lambda images, magnitudes: torch.stack([op(image, magnitude) for image, magnitude in zip(images, magnitudes.tolist())])


def torchvision_affine(image, shear=(0.0, 0.0), translate=(0.0, 0.0)):
    """About the image centre, nearest neighbour, black outside: PIL's defaults in FixMatch's RandAugment."""
    return tvf.affine(
        image, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear), interpolation=InterpolationMode.NEAREST, fill=0
    )


def torchvision_rotate(image, degrees):
    return tvf.rotate(image, degrees, interpolation=InterpolationMode.NEAREST, fill=0)


def torchvision_shear(image, shear, axis):
    """PIL's shear coefficient s (x_in = x_out + s y_out) is the tangent of torchvision's shear angle."""
    angles = [0.0, 0.0]
    angles[axis] = math.degrees(math.atan(shear))
    return torchvision_affine(image, shear=angles)


def torchvision_translate(image, fraction, axis):
    """PIL samples ``fraction`` of the side further on (``(1, 0, fraction * side, 0, 1, 0)``): the content moves back by it."""
    shift = [0.0, 0.0]
    shift[axis] = -fraction * image.shape[-1]
    return torchvision_affine(image, translate=shift)


CUTOUT_GRAY = 127  # the documented fill


def reference_cutout(images, sides, centres_y, centres_x):
    """torchvision's ``erase`` of each image's square, from (centre - side // 2) on, clipped at the borders."""
    height, width = images.shape[-2:]
    erased = images.clone()
    for index, (side, y, x) in enumerate(zip(sides.tolist(), centres_y.tolist(), centres_x.tolist())):
        top, bottom = max(y - side // 2, 0), min(y - side // 2 + side, height)
        left, right = max(x - side // 2, 0), min(x - side // 2 + side, width)
        if bottom > top and right > left:
            erased[index] = tvf.erase(images[index], top, left, bottom - top, right - left, torch.tensor(CUTOUT_GRAY, dtype=images.dtype))
    return erased


REFERENCE_OPS = {  # name: (function(images, magnitudes), low, high), in the order op indices are drawn
    "AutoContrast": (lambda x, m: tvf.autocontrast(x), 0, 0),
    "Brightness": (lambda x, m: reference_blend(x, torch.zeros_like(x), m), 0.05, 0.95),
    "Color": (lambda x, m: reference_blend(x, tvf.adjust_saturation(x, 0.0), m), 0.05, 0.95),
    "Contrast": (lambda x, m: reference_blend(x, tvf.adjust_contrast(x, 0.0), m), 0.05, 0.95),
    "Equalize": (lambda x, m: tvf.equalize(x), 0, 0),
    "Identity": (lambda x, m: x, 0, 0),
    "Posterize": (lambda x, m: x & ((255 << (8 - m.floor().long())) & 255).to(torch.uint8).view(-1, 1, 1, 1), 4, 9),
    "Sharpness": (lambda x, m: reference_blend(x, tvf.adjust_sharpness(x, 0.0), m), 0.05, 0.95),
    "Solarize": (lambda x, m: torch.where(x >= m.view(-1, 1, 1, 1), 255 - x, x), 0, 256),
    "Rotate": (one_by_one(torchvision_rotate), -30, 30),
    "ShearX": (one_by_one(lambda image, shear: torchvision_shear(image, shear, axis=0)), -0.3, 0.3),
    "ShearY": (one_by_one(lambda image, shear: torchvision_shear(image, shear, axis=1)), -0.3, 0.3),
    "TranslateX": (one_by_one(lambda image, fraction: torchvision_translate(image, fraction, axis=0)), -0.3, 0.3),
    "TranslateY": (one_by_one(lambda image, fraction: torchvision_translate(image, fraction, axis=1)), -0.3, 0.3),
}


def reference_randaugment_step(images, op_indices, levels):
    augmented = images.clone()
    for op_index, (function, low, high) in enumerate(REFERENCE_OPS.values()):
        chosen = torch.nonzero(op_indices == op_index).squeeze(1)
        if len(chosen) > 0:
            augmented[chosen] = function(images[chosen], low + levels[chosen] * (high - low))
    return augmented


def reference_flip_and_crop(images, pad_fraction=0.125):
    batch, _, height, width = images.shape
    flips = torch.rand(batch) < 0.5
    images = torch.where(flips.view(-1, 1, 1, 1), tvf.horizontal_flip(images), images)
    pad = int(pad_fraction * height + 0.5)
    padded = tvf.pad(images, [pad], padding_mode="reflect")
    tops, lefts = torch.randint(2 * pad + 1, (2, batch))
    return padded.unfold(2, height, 1).unfold(3, width, 1)[torch.arange(batch), :, tops, lefts]


def reference_strong(images, randaugment_ops=2, cutout_fraction=0.5):
    batch, _, size, _ = images.shape
    augmented = reference_flip_and_crop(images)
    op_indices = torch.randint(len(REFERENCE_OPS), (randaugment_ops, batch))
    levels = torch.rand(randaugment_ops, batch)
    for step_ops, step_levels in zip(op_indices, levels):
        augmented = reference_randaugment_step(augmented, step_ops, step_levels)
    side_fractions, centre_y, centre_x = torch.rand(3, batch)
    sides = (side_fractions * cutout_fraction * size).round().long()
    return reference_cutout(augmented, sides, (centre_y * size).long(), (centre_x * size).long())


def test_the_op_table_is_the_documented_one_in_the_reference_order():
    assert randaugment.RANDAUGMENT_OPS == tuple(REFERENCE_OPS)
    tables = {**randaugment.PIXEL_OPS, **randaugment.ENHANCEMENTS, **randaugment.GEOMETRIC_OPS}
    assert {name: (op.low, op.high) for name, op in tables.items()} == {
        name: (low, high) for name, (_, low, high) in REFERENCE_OPS.items()
    }


@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28), (3, 8)])
def test_randaugment_step_gives_every_sample_exactly_the_reference_op_it_drew(channels, size):
    torch.manual_seed(0)
    repeats = 8
    op_indices = torch.arange(len(REFERENCE_OPS)).repeat(repeats)
    levels = torch.rand(len(op_indices))
    levels[:28] = torch.tensor([0.0, 0.999]).repeat_interleave(len(REFERENCE_OPS))  # near the ends of every range
    images = random_images(len(op_indices), channels, size)
    images[-len(REFERENCE_OPS) :] //= 4  # dim images, where AutoContrast and Equalize stretch
    images[-2, 0] = 7  # a flat channel

    out = on_pixels(randaugment.randaugment_step, images, op_indices, levels)

    expected = reference_randaugment_step(images, op_indices, levels)
    mismatched = {list(REFERENCE_OPS)[op] for op in op_indices[(out != expected).flatten(1).any(1)]}
    assert not mismatched
    assert torch.equal(out[op_indices == 5], images[op_indices == 5])  # Identity


@pytest.mark.parametrize("view, reference", [("weak", reference_flip_and_crop), ("strong", reference_strong)])
@pytest.mark.parametrize("channels, size", [(3, 32), (1, 28)])
def test_views_are_the_reference_views_from_the_same_seed(view, reference, channels, size):
    images = random_images(64, channels, size)
    torch.manual_seed(3)
    expected = reference(images)
    torch.manual_seed(3)
    assert torch.equal(to_pixels(getattr(pixel_augmenter(channels), view)(images)), expected)


def view_statistics(views: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    change = (views.float() - images.float()).abs()
    return torch.stack(
        [views.float().mean() / 255, views.float().std() / 255, (views == 0).float().mean(),
         (views == augment.CUTOUT_FILL).float().mean(), (change > 0).float().mean(), change.mean() / 255]
    )


def smooth_images(batch: int, channels: int, size: int) -> torch.Tensor:
    """Low-frequency images in a part of the range, where every op has something to change."""
    coarse = torch.rand(batch, channels, 4, 4) * 160 + 40
    return nnf.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).round().to(torch.uint8)


def test_strong_views_have_the_reference_statistics_on_other_draws():
    """Holds however the draws are ordered: the same distributions, not the same samples."""
    torch.manual_seed(0)
    images = smooth_images(2048, 3, 16)
    torch.manual_seed(5)
    ours = view_statistics(to_pixels(pixel_augmenter(3).strong(images)), images)
    torch.manual_seed(6)
    theirs = view_statistics(reference_strong(images), images)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0.01)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("view", ["weak", "strong"])
def test_views_trace_as_one_graph_without_host_synchronisation(device, channels, size, view):
    """fullgraph fails on any graph break: a .item(), nonzero, boolean mask or branch on a tensor's value."""
    augmenter = pixel_augmenter(channels)
    traced = torch.compile(getattr(augmenter, view), fullgraph=True, backend="eager")
    images = random_images(8, channels, size, device)
    torch.manual_seed(0)
    out = traced(images)
    torch.manual_seed(0)
    assert torch.equal(out, getattr(augmenter, view)(images))


@pytest.mark.slow
# One shape with every op (Color needs 3 channels) and a side no multiple of the vector width (28): each compile
# takes seconds to tens of them; the 28x28x1 views compile inside the training step in tests/test_compile.py.
@pytest.mark.parametrize("channels, size", [(3, 28)])
@pytest.mark.parametrize("view", ["weak", "strong"])
def test_inductor_compiled_views_give_the_eager_pixels_from_the_same_seed(monkeypatch, channels, size, view):
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)  # eager's random numbers
    augmenter = pixel_augmenter(channels)
    compiled = torch.compile(getattr(augmenter, view), fullgraph=True)
    images = random_images(16, channels, size)
    torch.manual_seed(1)
    out = compiled(images)
    torch.manual_seed(1)
    assert torch.equal(to_pixels(out), to_pixels(getattr(augmenter, view)(images)))


@pytest.mark.parametrize("size", [8, 16, 32])
def test_equalize_is_torchvisions_on_images_of_every_spread(size):
    torch.manual_seed(0)
    low = torch.randint(0, 200, (96, 3, 1, 1))
    spread = torch.randint(1, 56, (96, 3, 1, 1))
    images = (low + torch.rand(96, 3, size, size) * spread).to(torch.uint8)
    images[:8] = random_images(8, 3, size)
    images[8, 1] = 9  # one value
    images[9, 2, : size // 2] = 200  # two values
    assert torch.equal(on_pixels(randaugment.equalize, images), tvf.equalize(images))
