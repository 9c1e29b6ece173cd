"""Write a small image folder for the README's "Your own images" example: coloured shapes on noise.

    python scripts/make_example_images.py data/shapes [--train-per-class 40] [--test-per-class 20] [--unlabeled 120]

writes data/shapes/train/<class>/*.png, data/shapes/test/<class>/*.png and data/shapes/unlabeled/*.png
for the classes circle, square and triangle, at sizes from 24 to 48 pixels (so `image_folder` resizes
them), deterministically from --seed. The unlabeled pool mixes the three shapes and has no classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")


def shape_image(shape: str, rng: np.random.Generator) -> Image.Image:
    """One ``shape`` of a random colour, size and place on a noisy background of a random size."""
    side = int(rng.integers(24, 49))
    background = rng.integers(0, 96, size=(side, side, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    radius = side * rng.uniform(0.2, 0.35)
    cx, cy = rng.uniform(radius, side - radius, size=2)
    colour = tuple(int(c) for c in rng.integers(128, 256, size=3))
    if shape == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    elif shape == "square":
        draw.rectangle((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    else:
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the folder to write (train/, test/, unlabeled/)")
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=20)
    parser.add_argument("--unlabeled", type=int, default=120, help="images in the unlabeled pool (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for part, count in (("train", args.train_per_class), ("test", args.test_per_class)):
        for shape in CLASSES:
            folder = args.root / part / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape_image(shape, rng).save(folder / f"{i:04d}.png")
    if args.unlabeled:
        (args.root / "unlabeled").mkdir(parents=True, exist_ok=True)
        for i in range(args.unlabeled):
            shape_image(CLASSES[int(rng.integers(len(CLASSES)))], rng).save(args.root / "unlabeled" / f"{i:04d}.png")
    print(f"wrote {args.root}: {len(CLASSES)} classes, {args.train_per_class} + {args.test_per_class} images each, "
          f"{args.unlabeled} unlabeled")


if __name__ == "__main__":
    main()
