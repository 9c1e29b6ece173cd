"""`image_folder`: your own images read from train/<class>/, test/<class>/ and unlabeled/, cached once."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hdl.data.image_folder as image_folder
from hdl import workflow
from hdl.cli import main
from hdl.data import load_dataset
from hdl.data.dataset import NO_LABEL
from hdl.errors import UserError


def write_image(path: Path, size=(32, 32), mode="RGB", seed=0) -> np.ndarray:
    """A random image of ``size`` (width, height) and ``mode`` at ``path``; returns its pixels."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return pixels


def make_folder(root: Path, train=None, test=None, pool=0, **image) -> Path:
    """``root`` with ``train`` / ``test`` images per class name (class -> count) and ``pool`` unlabeled ones."""
    train = train or {"dog": 3, "cat": 2, "bird": 4}
    test = test or {name: 1 for name in train}
    seed = 0
    for part, classes in (("train", train), ("test", test)):
        for name, count in classes.items():
            for i in range(count):
                write_image(root / part / name / f"{i}.png", seed=seed, **image)
                seed += 1
    for i in range(pool):
        write_image(root / "unlabeled" / f"u{i}.png", seed=seed, **image)
        seed += 1
    return root


def test_classes_are_the_sorted_folder_names_and_pixels_survive_unchanged(tmp_path):
    root = make_folder(tmp_path / "images", pool=5)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    dog = write_image(root / "train" / "dog" / "0.png", seed=99)
    dataset = load_dataset("image_folder", tmp_path / "data", image_folder=root)
    assert dataset.class_names == ("bird", "cat", "dog")
    # the pool follows the labeled training images, with no class
    assert dataset.train_labels.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2] + [NO_LABEL] * 5
    assert dataset.test_labels.tolist() == [0, 1, 2]
    assert dataset.train_images.shape == (14, 32, 32, 3) and dataset.train_images.dtype == np.uint8
    np.testing.assert_array_equal(dataset.train_images[6], dog)  # dog/0.png, the first dog


def test_normalisation_statistics_come_from_the_training_images(tmp_path):
    root = tmp_path / "images"
    for name, value in (("dark", 40), ("light", 200)):
        for part in ("train", "test"):
            Image.fromarray(np.full((8, 8), value if part == "train" else 255, dtype=np.uint8), "L").save(
                (root / part / name).mkdir(parents=True) or root / part / name / "a.png")
    dataset = load_dataset("image_folder", tmp_path / "data", image_folder=root, image_size=8)
    assert dataset.channels == 1
    mean, std = dataset.channel_stats()
    assert mean == pytest.approx((120 / 255,)) and std == pytest.approx((80 / 255,))


def test_a_folder_without_a_pool_has_every_training_image_labeled(tmp_path):
    dataset = load_dataset("image_folder", tmp_path / "data", image_folder=make_folder(tmp_path / "images"))
    assert (dataset.train_labels >= 0).all() and len(dataset.train_labels) == 9


def test_images_are_resized_to_the_configured_square(tmp_path):
    root = make_folder(tmp_path / "images", size=(40, 20))
    dataset = load_dataset("image_folder", tmp_path / "data", image_folder=root, image_size=16)
    assert dataset.train_images.shape[1:] == (16, 16, 3) and dataset.test_images.shape[1:] == (16, 16, 3)


def test_mixed_sizes_and_modes_are_converted_and_logged_once(tmp_path, capsys):
    root = make_folder(tmp_path / "images", mode="L")
    write_image(root / "train" / "cat" / "rgba.png", size=(50, 30), mode="RGBA")
    write_image(root / "test" / "dog" / "big.png", size=(64, 64), mode="RGB")
    dataset = load_dataset("image_folder", tmp_path / "data", image_folder=root)
    assert dataset.channels == 3  # one training image in colour: all are RGB
    log = capsys.readouterr().err.strip().splitlines()
    assert len(log) == 1, log
    assert "converted 13 images to RGB (12 L, 1 RGBA)" in log[0] and "resized images of 3 sizes" in log[0]
    load_dataset("image_folder", tmp_path / "data", image_folder=root)
    assert capsys.readouterr().err == ""  # the cache: nothing converted again


def test_grayscale_training_images_give_one_channel_and_colour_test_images_are_converted(tmp_path):
    root = make_folder(tmp_path / "images", mode="L")
    write_image(root / "test" / "dog" / "colour.png", mode="RGB")
    dataset = load_dataset("image_folder", tmp_path / "data", image_folder=root)
    assert dataset.train_images.shape[-1] == 1 and dataset.test_images.shape[-1] == 1


def test_a_rerun_reads_the_cache_and_a_changed_folder_decodes_again(tmp_path, monkeypatch):
    root, data_dir = make_folder(tmp_path / "images"), tmp_path / "data"
    first = load_dataset("image_folder", data_dir, image_folder=root)
    assert [p.name for p in data_dir.iterdir()] == [image_folder.cache_path(root, data_dir, 32).name]

    decoded = []
    real_decode = image_folder._Decoder.decode
    monkeypatch.setattr(image_folder._Decoder, "decode", lambda self, path: decoded.append(path) or real_decode(self, path))
    again = load_dataset("image_folder", data_dir, image_folder=root)
    assert decoded == []
    np.testing.assert_array_equal(again.train_images, first.train_images)
    assert again.class_names == first.class_names

    changed = root / "train" / "dog" / "0.png"
    pixels = write_image(changed, seed=123)
    os.utime(changed, ns=(1, 1))  # a new mtime even on a coarse clock
    updated = load_dataset("image_folder", data_dir, image_folder=root)
    assert len(decoded) == 12
    np.testing.assert_array_equal(updated.train_images[6], pixels)
    write_image(root / "train" / "dog" / "new.png")
    assert len(load_dataset("image_folder", data_dir, image_folder=root).train_labels) == 10
    assert len(list(data_dir.iterdir())) == 1  # replaced in place, no temporary files left


def test_another_size_is_another_cache(tmp_path):
    root, data_dir = make_folder(tmp_path / "images"), tmp_path / "data"
    assert load_dataset("image_folder", data_dir, image_folder=root, image_size=8).image_size == 8
    assert load_dataset("image_folder", data_dir, image_folder=root, image_size=16).image_size == 16
    assert len(list(data_dir.iterdir())) == 2


def bad_input(root: Path, data_dir: Path) -> str:
    """The one-line error loading ``root`` gives; nothing may have been written to ``data_dir``."""
    with pytest.raises(UserError) as error:
        load_dataset("image_folder", data_dir, image_folder=root)
    assert not data_dir.exists() or not list(data_dir.iterdir())
    message = str(error.value)
    assert "\n" not in message
    return message


def test_an_empty_class_folder_is_named(tmp_path):
    root = make_folder(tmp_path / "images")
    (root / "train" / "fish").mkdir()
    (root / "test" / "fish").mkdir()
    assert f"{root}/train/fish/ holds no images" in bad_input(root, tmp_path / "data")


@pytest.mark.parametrize("where", ["train/cat", "test/dog", "unlabeled"])
def test_a_truncated_image_is_named_by_path_and_nothing_is_cached(tmp_path, where):
    root = make_folder(tmp_path / "images", pool=2)
    broken = root / where / "broken.png"
    write_image(broken)
    broken.write_bytes(broken.read_bytes()[:200])
    assert f"{broken} is not a readable image" in bad_input(root, tmp_path / "data")


def test_a_file_that_is_no_image_is_named(tmp_path):
    root = make_folder(tmp_path / "images")
    (root / "train" / "cat" / "fake.jpg").write_bytes(b"plain text, not a JPEG")
    assert f"{root}/train/cat/fake.jpg is not a readable image" in bad_input(root, tmp_path / "data")


def test_test_classes_that_differ_from_train_are_listed(tmp_path):
    root = make_folder(tmp_path / "images", test={"dog": 1, "cat": 1, "fish": 1})
    message = bad_input(root, tmp_path / "data")
    assert "missing from test: bird; not in train: fish" in message


def test_a_pool_with_class_folders_is_refused(tmp_path):
    root = make_folder(tmp_path / "images", pool=1)
    write_image(root / "unlabeled" / "cat" / "0.png")
    assert f"{root}/unlabeled/ holds folders (cat)" in bad_input(root, tmp_path / "data")


def test_missing_parts_are_named(tmp_path):
    assert "is not a folder" in bad_input(tmp_path / "nowhere", tmp_path / "data")
    root = make_folder(tmp_path / "images")
    (root / "test" / "dog" / "0.png").unlink()
    assert f"{root}/test/dog/ holds no images" in bad_input(root, tmp_path / "data")
    with pytest.raises(UserError, match="--image-folder ROOT"):
        load_dataset("image_folder", tmp_path / "data")


def test_hdl_split_reports_a_bad_folder_in_one_line_with_exit_2(tmp_path, capsys):
    root = make_folder(tmp_path / "images")
    (root / "train" / "fish").mkdir()
    out = tmp_path / "split.npz"
    status = main(["split", "--dataset", "image_folder", "--image-folder", str(root), "--data-dir", str(tmp_path / "data"),
                   "--labels", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("hdl split: error: image_folder:")
    assert not out.exists()


def test_hdl_split_draws_from_the_folder(tmp_path, capsys):
    root = make_folder(tmp_path / "images")
    out = tmp_path / "split.npz"
    assert main(["split", "--dataset", "image_folder", "--image-folder", str(root), "--data-dir", str(tmp_path / "data"),
                 "--labels", "3", "--out", str(out)]) == 0
    with np.load(out) as split:
        assert len(split["labeled_idx"]) == 3 and len(split["unlabeled_idx"]) == 6


def test_hdl_split_puts_the_whole_pool_in_the_unlabeled_set_and_never_labels_it(tmp_path, capsys):
    root = make_folder(tmp_path / "images", pool=4)
    out = tmp_path / "split.npz"
    assert main(["split", "--dataset", "image_folder", "--image-folder", str(root), "--data-dir", str(tmp_path / "data"),
                 "--labels", "3", "--include-labeled", "--out", str(out)]) == 0
    assert "[4, 2, 3], and 4 of the unlabeled pool (no class)" in capsys.readouterr().out
    with np.load(out) as split:
        assert split["labeled_idx"].max() < 9  # the pool is indices 9-12
        assert set(split["unlabeled_idx"]) == set(range(13))  # the rest, the labeled (include_labeled) and the pool


def test_the_workflow_passes_the_folder_and_size_to_every_job():
    config = {"data_dir": "data", "download": False, "image_folder": {"root": "my images", "image_size": 48}}
    assert workflow.data_flags(config) == "--data-dir data --image-folder 'my images' --image-size 48"
    config["image_folder"]["root"] = None
    assert workflow.data_flags(config) == "--data-dir data"
