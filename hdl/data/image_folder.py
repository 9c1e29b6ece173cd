"""Your own images as a data set: ``<root>/train/<class>/*``, ``<root>/test/<class>/*`` and an optional
``<root>/unlabeled/*``.

Class names are the folder names, sorted, so class k is the k-th name (as torchvision's ImageFolder
numbers them).  Image files are those with the extensions ImageFolder reads; other files are ignored.
Every image is resized (its shorter side to ``image_size``, then the centre cropped square) and kept as
uint8.  The channel count follows the training images: one channel where every one is grayscale,
otherwise RGB, every image converted to it; the log says once how many were converted or resized.

Decoding happens once: the arrays are cached in one .npz under ``data_dir``, named by the root and size
and written atomically, with a fingerprint of every image's path, size and modification time.  A rerun
whose folder has the same fingerprint reads the cache; an added, removed or changed image decodes again.
A bad folder (no classes, an empty class, an unreadable image, test classes that differ from train's,
class folders in ``unlabeled/``) is a UserError naming the path, raised before the cache is written.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdl.errors import UserError
from hdl.io import save_npz

#: the extensions torchvision's ImageFolder reads (torchvision.datasets.folder.IMG_EXTENSIONS)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")
#: bump when the cache's content changes meaning, so that old caches are decoded again
CACHE_VERSION = 1
POOL_FOLDER = "unlabeled"


@dataclass(frozen=True)
class FolderImages:
    """A folder data set's arrays: uint8 (N, S, S, C) images, int64 labels; the pool has none."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    unlabeled_images: np.ndarray
    class_names: tuple[str, ...]


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_folders(root: Path, part: str) -> dict[str, list[Path]]:
    """Class name -> its image files, for ``root/part``; every class must hold at least one image."""
    folder = root / part
    if not folder.is_dir():
        raise UserError(f"image_folder: {folder}/ is missing; expected {root}/{part}/<class>/<images> "
                        f"(see the README, \"Your own images\")")
    classes = {d.name: _image_files(d) for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    if not classes:
        raise UserError(f"image_folder: {folder}/ holds no class folders; put each class's images in {folder}/<class>/")
    for name, files in classes.items():
        if not files:
            raise UserError(f"image_folder: {folder / name}/ holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            "add some or remove the folder")
    return classes


def _pool_files(root: Path) -> list[Path]:
    folder = root / POOL_FOLDER
    if not folder.is_dir():
        return []
    subfolders = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if subfolders:
        raise UserError(f"image_folder: {folder}/ holds folders ({', '.join(subfolders)}), but the unlabeled pool has no "
                        f"classes: put its images directly in {folder}/, labeled images in {root}/train/<class>/")
    return _image_files(folder)


def _fingerprint(files: list[Path], image_size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION} size {image_size}\n".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path(root: Path, data_dir: Path, image_size: int) -> Path:
    """Where the decoded arrays of ``root`` at ``image_size`` are kept: one file per folder and size."""
    resolved = root.resolve()
    tag = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return data_dir / f"image_folder-{resolved.name}-{tag}-{image_size}px.npz"


def _read_cache(path: Path, fingerprint: str) -> FolderImages | None:
    """The cached arrays, or None where there is no cache, it is unreadable or it was made from other files."""
    try:
        with np.load(path, allow_pickle=False) as cache:
            if str(cache["fingerprint"]) != fingerprint:
                return None
            return FolderImages(cache["train_images"], cache["train_labels"], cache["test_images"],
                                cache["test_labels"], cache["unlabeled_images"], tuple(cache["class_names"].tolist()))
    except (OSError, KeyError, ValueError):  # missing, torn or foreign: decode again and replace it
        return None


def _mode(path: Path) -> str:
    """The mode ``path`` declares in its header (nothing decoded); an unreadable file is a UserError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"image_folder: {path} is not a readable image ({error}); replace or remove it") from None


def _square(image, image_size: int):
    """``image`` with its shorter side resized to ``image_size`` and the centre square cropped."""
    from PIL import Image

    width, height = image.size
    scale = image_size / min(width, height)
    resized = image.resize((max(image_size, round(width * scale)), max(image_size, round(height * scale))),
                           Image.Resampling.BICUBIC)
    left, top = (resized.width - image_size) // 2, (resized.height - image_size) // 2
    return resized.crop((left, top, left + image_size, top + image_size))


class _Decoder:
    """Decodes images to one mode and size, counting what it had to convert or resize for the log."""

    def __init__(self, mode: str, image_size: int):
        self.mode, self.image_size = mode, image_size
        self.converted: Counter[str] = Counter()
        self.sizes: Counter[tuple[int, int]] = Counter()

    def decode(self, path: Path) -> np.ndarray:
        """``path`` as a uint8 (S, S, C) array; an unreadable or truncated file is a UserError naming it."""
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
                if image.mode != self.mode:
                    self.converted[image.mode] += 1
                    # a palette with transparency converts to RGB only through RGBA without a warning
                    image = (image.convert("RGBA") if image.mode == "P" else image).convert(self.mode)
                self.sizes[image.size] += 1
                if image.size != (self.image_size, self.image_size):
                    image = _square(image, self.image_size)
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise UserError(f"image_folder: {path} is not a readable image ({error}); replace or remove it") from None
        return array[..., None] if array.ndim == 2 else array

    def stack(self, paths: list[Path]) -> np.ndarray:
        channels = 1 if self.mode == "L" else 3
        images = np.zeros((len(paths), self.image_size, self.image_size, channels), dtype=np.uint8)
        for i, path in enumerate(paths):
            images[i] = self.decode(path)
        return images

    def summary(self, root: Path) -> str | None:
        """One line on what was converted or resized (None where every image already fit)."""
        parts = []
        if self.converted:
            modes = ", ".join(f"{count} {mode}" for mode, count in sorted(self.converted.items()))
            parts.append(f"converted {sum(self.converted.values())} images to {self.mode} ({modes})")
        if len(self.sizes) > 1 or (self.image_size, self.image_size) not in self.sizes:
            widths, heights = [w for w, _ in self.sizes], [h for _, h in self.sizes]
            parts.append(f"resized images of {len(self.sizes)} sizes ({min(widths)}-{max(widths)} x "
                         f"{min(heights)}-{max(heights)} px) to {self.image_size}x{self.image_size}")
        return f"image_folder {root}: " + "; ".join(parts) if parts else None


def _decode(train: dict[str, list[Path]], test: dict[str, list[Path]], pool: list[Path], root: Path,
            image_size: int) -> FolderImages:
    class_names = tuple(train)
    train_files = [path for name in class_names for path in train[name]]
    # channels follow the training images: grayscale only where every one of them is
    mode = "L" if all(_mode(path) in GRAYSCALE_MODES for path in train_files) else "RGB"
    decoder = _Decoder(mode, image_size)
    labels = {part: np.concatenate([np.full(len(classes[name]), label, dtype=np.int64)
                                    for label, name in enumerate(class_names)])
              for part, classes in (("train", train), ("test", test))}
    images = FolderImages(
        decoder.stack(train_files), labels["train"],
        decoder.stack([path for name in class_names for path in test[name]]), labels["test"],
        decoder.stack(pool), class_names,
    )
    summary = decoder.summary(root)
    if summary:
        print(summary, file=sys.stderr)
    return images


def load_image_folder(root: str | Path, data_dir: str | Path, image_size: int) -> FolderImages:
    """The images under ``root`` at ``image_size`` px, from the cache under ``data_dir`` where it is current."""
    root, data_dir = Path(root), Path(data_dir)
    if image_size < 1:
        raise UserError(f"image_folder: image size {image_size} must be at least 1 pixel")
    if not root.is_dir():
        raise UserError(f"image_folder: {root} is not a folder; expected {root}/train/<class>/ and {root}/test/<class>/")
    train, test = _class_folders(root, "train"), _class_folders(root, "test")
    if set(test) != set(train):
        missing, extra = sorted(set(train) - set(test)), sorted(set(test) - set(train))
        raise UserError(f"image_folder: {root}/test/ has other classes than {root}/train/ "
                        f"(missing from test: {', '.join(missing) or 'none'}; not in train: {', '.join(extra) or 'none'}); "
                        "both need the same class folders")
    pool = _pool_files(root)
    files = [path for classes in (train, test) for paths in classes.values() for path in paths] + pool
    fingerprint = _fingerprint(files, image_size)
    cache = cache_path(root, data_dir, image_size)
    images = _read_cache(cache, fingerprint)
    if images is None:
        images = _decode(train, test, pool, root, image_size)
        save_npz(cache, fingerprint=np.array(fingerprint), class_names=np.array(images.class_names),
                 train_images=images.train_images, train_labels=images.train_labels, test_images=images.test_images,
                 test_labels=images.test_labels, unlabeled_images=images.unlabeled_images)
    return images
