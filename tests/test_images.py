"""Image files → arrays: decoding rules, the loader transformer and the data-set loaders."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from skinestimator import (
    ColorConstancy,
    ImageLoader,
    ImageReadError,
    ImageResizer,
    load_dermamnist,
    load_ham10000,
    load_image_folder,
    make_synthetic_lesions,
    read_image,
    save_image_folder,
)
from skinestimator.images import image_file_size, resize_batch
from tests.conftest import peak_memory, require_dermamnist, require_ham10000


def _save(tmp_path, name, image: Image.Image, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


# ---------------------------------------------------------------- read_image
def test_exif_orientation_is_honoured(tmp_path):
    # A 40x20 (w x h) image whose EXIF says "rotate 90° clockwise to display" (orientation 6).
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red, right half black
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, "rotated.jpg", image, exif=exif, quality=95)
    out = read_image(path)
    assert out.shape == (40, 20, 3)  # displayed upright: portrait
    assert image_file_size(path) == (40, 20)  # the header alone gives the same answer
    assert out[:10, :, 0].mean() > 200 and out[-10:, :, 0].mean() < 50  # red ends up on top


def _stripes(height, width):
    """Black and white diagonal stripes two pixels wide: they vanish if resolution is lost."""
    value = (np.indices((height, width)).sum(0) // 2) % 2 * 255
    return np.repeat(value.astype(np.uint8)[..., np.newaxis], 3, axis=2)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("resize", ["crop", "pad", "stretch"])
def test_jpeg_draft_decoding_keeps_the_resolution_the_resize_needs(tmp_path, orientation, resize):
    # A 256x64 (w x h) JPEG; orientations 5-8 display it as 64x256. libjpeg's reduced-size
    # decoding must be asked for the size in the file's own (unrotated) orientation, else a
    # target of the opposite aspect is decoded 4x too small and upscaled back: stripes gone.
    image = Image.fromarray(_stripes(64, 256))
    exif = image.getexif()
    exif[0x0112] = orientation
    path = _save(tmp_path, "stripes.jpg", image, exif=exif, quality=95)
    shown_height, shown_width = image_file_size(path)
    with Image.open(path) as full:  # full-resolution reference, no draft
        upright = ImageOps.exif_transpose(full.convert("RGB"))
    for size in [(shown_height // 4, shown_width), (shown_height, shown_width // 4),
                 (shown_width // 4, shown_height // 4)]:
        out = read_image(path, size, resize=resize)
        height, width = size
        if resize == "crop":
            expected = ImageOps.fit(upright, (width, height), method=Image.Resampling.BICUBIC)
        elif resize == "pad":
            expected = ImageOps.pad(upright, (width, height), method=Image.Resampling.BICUBIC)
        else:
            expected = upright.resize((width, height), resample=Image.Resampling.BICUBIC)
        expected = np.asarray(expected)
        assert out.shape == expected.shape == (height, width, 3)
        assert np.abs(out.astype(int) - expected).max() <= 8, (orientation, size)
    # The reviewer's case: a rotated photo cropped to the opposite aspect keeps its stripes.
    if orientation == 6 and resize == "crop":
        assert read_image(path, (16, 64), resize=resize).std() > 100


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("L", 128, (128, 128, 128)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32768, (128, 128, 128)),
    ],
)
def test_colour_modes_become_rgb(tmp_path, mode, value, expected):
    ending = "jpg" if mode == "CMYK" else "png"
    path = _save(tmp_path, f"image.{ending}", Image.new(mode, (8, 6), value))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_allclose(out[3, 4], expected, atol=3)


def test_transparency_is_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (10, 200, 10, 0))  # fully transparent green
    out = read_image(_save(tmp_path, "clear.png", rgba))
    np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 255] + [0] * 765)
    out = read_image(_save(tmp_path, "palette.png", palette))
    np.testing.assert_array_equal(out[0, 0], (0, 0, 255))


def test_resize_policies(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :5] = 255  # a white band on the far left
    path = _save(tmp_path, "wide.png", Image.fromarray(pixels))
    cropped = read_image(path, (10, 10), resize="crop")
    padded = read_image(path, (10, 10), resize="pad")
    stretched = read_image(path, (10, 10), resize="stretch")
    assert cropped.shape == padded.shape == stretched.shape == (10, 10, 3)
    assert cropped[:, 0].max() < 30  # the centre crop cut the band away
    assert padded[0].max() == 0 and padded[5, 0].min() > 200  # black bars, band kept
    assert stretched[:, 0].min() > 200
    with pytest.raises(ValueError, match="resize must be one of"):
        read_image(path, (10, 10), resize="zoom")


def test_bad_files_raise_an_error_naming_the_file(tmp_path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ImageReadError, match="missing.jpg"):
        read_image(missing)
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("this is not a JPEG")
    with pytest.raises(ImageReadError, match="notes.jpg"):
        read_image(not_an_image)
    for broken in (missing, not_an_image):
        with pytest.raises(ImageReadError, match=broken.name):
            image_file_size(broken)
    good = _save(tmp_path, "good.jpg", Image.new("RGB", (64, 64), (9, 9, 9)))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="truncated.jpg"):
        read_image(truncated)
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    path = _save(tmp_path, "big.png", Image.new("RGB", (100, 100)))
    # Lower Pillow's own limit so that a small file counts as a bomb; the guard must fire.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="big.png"):
        read_image(path)


# ---------------------------------------------------------------- ImageLoader
def test_image_loader_reads_paths_at_one_size(lesion_folder):
    _, paths, _ = lesion_folder
    loader = ImageLoader(size=(24, 40))
    images = loader.fit_transform(paths[:5])
    assert images.shape == (5, 24, 40, 3) and images.dtype == np.uint8
    assert loader.size_ == (24, 40)
    threaded = ImageLoader(size=(24, 40), n_jobs=2).fit_transform(paths[:5])
    np.testing.assert_array_equal(images, threaded)
    # Same pixels as the arrays the files were written from (PNG is lossless).
    X, _ = make_synthetic_lesions(n_samples=150, image_size=(32, 32), random_state=0)
    np.testing.assert_array_equal(ImageLoader(size=(32, 32)).transform(paths[:3]), X[:3])


def test_image_loader_estimator_contract(lesion_folder):
    _, paths, _ = lesion_folder
    loader = ImageLoader(size=(16, 16), resize="pad")
    assert clone(loader).get_params() == loader.get_params()
    assert loader.set_params(size=(8, 8)) is loader and loader.size == (8, 8)
    restored = pickle.loads(pickle.dumps(loader.fit(paths)))
    np.testing.assert_array_equal(restored.transform(paths[:2]), loader.transform(paths[:2]))
    # Stateless: transform works unfitted too, as the requires_fit tag says.
    assert ImageLoader().__sklearn_tags__().requires_fit is False
    assert ImageLoader(size=(8, 8)).transform(paths[:1]).shape == (1, 8, 8, 3)


@pytest.mark.parametrize(
    "params, X, message",
    [
        ({"size": (0, 10)}, ["a.png"], "size must be a pair of positive integers"),
        ({"size": 32}, ["a.png"], "size must be a pair"),
        ({"resize": "zoom"}, ["a.png"], "resize must be one of"),
        ({}, np.zeros((2, 3)), "1-D sequence of image file paths"),
        ({}, [], "no image paths: X is empty"),
        ({}, np.array([], dtype=str), "no image paths: X is empty"),
    ],
)
def test_image_loader_errors(params, X, message):
    with pytest.raises(ValueError, match=message):
        ImageLoader(**params).fit(X)


def test_image_loader_names_the_corrupt_file(lesion_folder, tmp_path):
    _, paths, _ = lesion_folder
    bad = tmp_path / "ISIC_broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 garbage")
    with pytest.raises(ImageReadError, match="ISIC_broken.jpg"):
        ImageLoader(size=(8, 8)).fit_transform([*paths[:3], str(bad)])


# ---------------------------------------------------------------- array transformers
def test_image_resizer_layouts():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    assert ImageResizer(size=(5, 6)).fit_transform(rgb).shape == (3, 5, 6, 3)
    grey = rgb[..., 0]
    assert ImageResizer(size=(5, 6)).fit_transform(grey).shape == (3, 5, 6)
    flat = rgb.reshape(3, -1).astype(np.float32)
    out = ImageResizer(size=(5, 6), image_shape=(10, 12, 3)).fit_transform(flat)
    assert out.shape == (3, 90) and out.dtype == np.float32
    constant = np.full((1, 8, 8, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(ImageResizer(size=(4, 4)).fit_transform(constant), 77)


def test_colour_constancy_neutralises_a_colour_cast():
    X, _ = make_synthetic_lesions(n_samples=4, image_size=(32, 32), random_state=0)
    cast = np.clip(X * np.array([1.0, 0.8, 0.6]), 0, 255).astype(np.uint8)
    corrected = ColorConstancy().fit_transform(cast).astype(float)
    channel_means = corrected.mean(axis=(1, 2))
    spread_before = np.ptp(cast.astype(float).mean(axis=(1, 2)), axis=1)
    spread_after = np.ptp(channel_means, axis=1)
    assert (spread_after < 0.5 * spread_before).all()


@pytest.mark.parametrize("power", [1, 6, 150, 1e4, np.inf])
def test_colour_constancy_any_power_without_overflow(power):
    # uint8 ** 150 overflowed float64 (warnings, NaN → [0, 255, 255]); inf returned the input.
    reddish = np.zeros((1, 4, 4, 3), dtype=np.uint8) + np.array([200, 100, 100], np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ColorConstancy(power=power).fit_transform(reddish)
    np.testing.assert_array_equal(out[0, 0, 0], (141, 141, 141))


def test_colour_constancy_infinite_power_is_max_rgb():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 120, (3, 6, 6, 3)).astype(np.float64)
    images[:, 0, 0] = [[250, 125, 50], [90, 180, 60], [40, 40, 200]]  # one bright pixel each
    out = ColorConstancy(power=np.inf).fit_transform(images)
    peaks = out.max(axis=(1, 2))
    np.testing.assert_allclose(peaks, peaks[:, :1].repeat(3, axis=1))  # white patch made grey
    gain = out[:, 0, 0] / images[:, 0, 0]
    np.testing.assert_allclose(gain * images.max(axis=(1, 2)), peaks)
    # Large finite powers approach it.
    near = ColorConstancy(power=1000).fit_transform(images)
    np.testing.assert_allclose(near, out, rtol=0.02)


def test_colour_constancy_of_a_data_set_needs_memory_of_its_size_only():
    # In one go, its float64 working copies took 32x the uint8 input: HAM10000 ran out of 24 GB.
    images = np.random.default_rng(0).integers(0, 256, (400, 150, 200, 3), dtype=np.uint8)
    cc = ColorConstancy().fit(images[:2])
    out, peak = peak_memory(cc.transform, images)
    assert peak < 8 * images.nbytes, f"peak {peak / 1e6:.0f} MB for {images.nbytes / 1e6:.0f} MB"
    # Each image is balanced on its own, so chunks change nothing.
    for i in (0, 399):
        np.testing.assert_array_equal(out[i], cc.transform(images[i : i + 1])[0])


@pytest.mark.parametrize("power", [0.5, 0, -np.inf, np.nan, "6", True, None])
def test_colour_constancy_rejects_bad_power(power):
    images = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="power must be a number >= 1 or np.inf"):
        ColorConstancy(power=power).fit(images)


def test_transformers_in_a_pipeline(lesion_folder):
    _, paths, _ = lesion_folder
    pipe = Pipeline([("load", ImageLoader(size=(20, 20))), ("light", ColorConstancy()),
                     ("resize", ImageResizer(size=(10, 10)))])
    assert pipe.fit_transform(paths[:4]).shape == (4, 10, 10, 3)


# ---------------------------------------------------------------- data-set loaders
def test_load_image_folder(tmp_path):
    X, y = make_synthetic_lesions(n_samples=9, n_classes=3, image_size=(8, 8), random_state=0)
    save_image_folder(X, y, tmp_path / "data", format="jpg")
    (tmp_path / "data" / "README.txt").write_text("ignored")
    paths, labels = load_image_folder(tmp_path / "data")
    assert len(paths) == 9 and sorted(set(labels)) == sorted(set(y))
    assert all(str(p).startswith(str(tmp_path / "data" / lab)) for p, lab in zip(paths, labels))


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image_folder(tmp_path / "nowhere")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty_root")
    (tmp_path / "tree" / "nevus").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "tree" / "nevus" / "a.png")
    (tmp_path / "tree" / "melanoma").mkdir()
    with pytest.raises(ValueError, match="melanoma.*holds no images"):
        load_image_folder(tmp_path / "tree")


def test_save_image_folder_never_overwrites(tmp_path):
    black = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    white = np.full((2, 4, 4, 3), 255, dtype=np.uint8)
    paths = save_image_folder(black, ["x", "y"], tmp_path)
    with pytest.raises(FileExistsError, match="00000.png.*never overwrites"):
        save_image_folder(white, ["x", "y"], tmp_path)
    # A partial clash writes nothing either: "z/00000.png" is free but "y/00001.png" is not.
    with pytest.raises(FileExistsError, match="00001.png"):
        save_image_folder(white, ["z", "y"], tmp_path)
    assert not (tmp_path / "z").exists()
    np.testing.assert_array_equal(ImageLoader(size=(4, 4)).transform(paths), black)
    # Other labels, or another format, do not clash.
    more = save_image_folder(white, ["z", "z"], tmp_path, format="jpg")
    assert sorted(load_image_folder(tmp_path)[0]) == sorted([*paths, *more])


@pytest.mark.parametrize(
    "label, problem",
    [
        ("../escaped", "path separator"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("", "not a folder name"),
        (".", "not a folder name"),
        ("..", "not a folder name"),
        (".hidden", "load_image_folder skips"),
    ],
)
def test_save_image_folder_rejects_unsafe_labels(tmp_path, label, problem):
    root = tmp_path / "root"
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=f"label {re.escape(repr(label))} .*{problem}"):
        save_image_folder(images, ["fine", label], root)
    assert list(tmp_path.rglob("*")) == []  # nothing written, not even root or "fine"


def test_save_image_folder_rejects_a_label_linking_outside_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="'link' .*outside root"):
        save_image_folder(np.zeros((1, 4, 4, 3), dtype=np.uint8), ["link"], tmp_path / "root")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    "shape", [(2, 4, 4, 4), (2, 4, 4, 2), (2, 4, 4, 1), (4, 4), (2, 1, 4, 4, 3)]
)
def test_save_image_folder_checks_the_image_shape(tmp_path, shape):
    with pytest.raises(ValueError, match=r"\(n, H, W, 3\).*\(n, H, W\).*got shape"):
        save_image_folder(np.zeros(shape, dtype=np.uint8), ["a", "b"][: shape[0]], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_save_image_folder_grey_and_label_count(tmp_path):
    grey = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    paths = save_image_folder(grey, ["a", "b"], tmp_path / "grey")
    for path, image in zip(paths, grey):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
        np.testing.assert_array_equal(read_image(path)[..., 1], image)
    with pytest.raises(ValueError, match="one label per image"):
        save_image_folder(grey, ["a"], tmp_path / "other")
    with pytest.raises(ValueError, match="uint8"):
        save_image_folder(grey.astype(float), ["a", "b"], tmp_path / "other")


def test_synthetic_lesions_are_reproducible_and_balanced():
    X1, y1 = make_synthetic_lesions(n_samples=30, n_classes=5, random_state=3)
    X2, y2 = make_synthetic_lesions(n_samples=30, n_classes=5, random_state=3)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert set(np.unique(y1, return_counts=True)[1]) == {6}
    with pytest.raises(ValueError, match="n_classes"):
        make_synthetic_lesions(n_classes=9)


def test_load_dermamnist_reads_a_small_npz(tmp_path):
    images = np.zeros((2, 28, 28, 3), dtype=np.uint8)
    np.savez(tmp_path / "dermamnist.npz", test_images=images, test_labels=np.array([[0], [6]]))
    X, y = load_dermamnist(tmp_path, split="test")
    assert X.shape == (2, 28, 28, 3)
    assert list(y) == ["akiec", "vasc"]


@pytest.mark.parametrize(
    "name, write, message",
    [
        ("labels.csv", lambda p: p.write_text("image,label\na.jpg,nv\n"), "not a DermaMNIST .npz"),
        ("empty.npz", lambda p: p.write_bytes(b""), "not a DermaMNIST .npz"),
        ("one.npy", lambda p: np.save(p, np.zeros(3)), "holds a single array"),
        ("other.npz", lambda p: np.savez(p, foo=np.zeros(3)), "lacks train_images, train_labels"),
    ],
)
def test_load_dermamnist_rejects_other_files(tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError, match=message) as info:
        load_dermamnist(path)
    assert name in str(info.value) and "train_images" in str(info.value)
    assert "pickle" not in str(info.value)


def test_load_dermamnist_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_dermamnist(tmp_path / "nowhere.npz")


@pytest.mark.realdata
def test_load_ham10000_counts():
    root = require_ham10000()
    paths, labels, groups, metadata = load_ham10000(root, return_metadata=True)
    assert len(paths) == 10015
    assert sorted(set(labels)) == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert len(set(groups)) == 7470
    assert set(metadata) >= {"age", "sex", "localization", "image_id"}
    assert read_image(paths[0]).shape == (150, 200, 3)


@pytest.mark.realdata
def test_load_dermamnist_official_split():
    root = require_dermamnist()
    X, y = load_dermamnist(root, split="test")
    assert X.shape == (2005, 28, 28, 3) and X.dtype == np.uint8
    assert (y == "nv").sum() > 1000


@pytest.mark.parametrize("policy", ["crop", "pad", "stretch"])
def test_resize_batch_frames_arrays_as_read_image_frames_files(tmp_path, policy):
    # An odd-sized photo, where the pad bands cannot be split evenly: they must fall on the
    # same side for arrays as Pillow puts them for files.
    rng = np.random.RandomState(0)
    image = rng.randint(60, 255, size=(47, 30, 3)).astype(np.uint8)
    path = tmp_path / "odd.png"
    Image.fromarray(image).save(path)
    from_array = resize_batch(image[None], (20, 16), policy=policy)[0].astype(float)
    from_file = read_image(path, (20, 16), resize=policy).astype(float)
    assert from_array.shape == from_file.shape == (20, 16, 3)
    if policy == "pad":
        np.testing.assert_array_equal(from_array.sum(axis=(0, 2)) == 0,
                                      from_file.sum(axis=(0, 2)) == 0)
    # Resampling differs (torch bilinear against Pillow bicubic), framing must not.
    assert np.abs(from_array - from_file).mean() < 25


# ---------------------------------------------------------------- review fixes
@pytest.mark.parametrize("channels, kind", [(3, "RGB"), (4, "RGBA")])
def test_one_colour_image_is_not_read_as_grey_images(channels, kind):
    # (H, W, 3) used to pass as H grey images 3 pixels wide: unchanged by ColorConstancy,
    # resized to (H, 32, 32), and H rows of probabilities from the classifier.
    from skinestimator.images import as_image_batch
    from tests.conftest import tiny_classifier

    image = np.random.default_rng(0).integers(0, 256, (40, 60, channels), dtype=np.uint8)
    message = (rf"shape \(40, 60, {channels}\).*one {kind} image.*image\[None\].*"
               rf"\(40, 60, {channels}, 1\)")
    for step in (ColorConstancy(), ImageResizer(size=(32, 32))):
        with pytest.raises(ValueError, match=message):
            step.fit_transform(image)
    with pytest.raises(ValueError, match=message):
        as_image_batch(image)
    with pytest.raises(ValueError, match=message):  # the classifier validates through it too
        tiny_classifier().fit(image, np.zeros(40, dtype=int))
    # The batch of one the message asks for works, and so do grey images 3 or 4 pixels wide
    # given a channel axis.
    assert ImageResizer(size=(32, 32)).fit_transform(image[None]).shape == (1, 32, 32, channels)
    grey = np.stack([image[..., 0], image[..., 1]])[:, :, :channels, None]  # (2, 40, C, 1)
    assert ImageResizer(size=(8, 8)).fit_transform(grey).shape == (2, 8, 8, 1)
    assert as_image_batch(grey).shape == (2, 40, channels, 3)


def _tree_with_one_image(root):
    (root / "nevus").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "nevus" / "a.png")
    return root


def test_load_image_folder_skips_files_in_hidden_folders(tmp_path):
    root = _tree_with_one_image(tmp_path / "data")
    for hidden in ("nevus/.ipynb_checkpoints/x-checkpoint.png", "nevus/.thumbs/t.png",
                   "nevus/deep/.cache/c.png", "nevus/.hidden.png"):
        (root / hidden).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / hidden)
    Image.new("RGB", (4, 4)).save(root / "nevus" / "deep" / "b.png")  # visible, nested: kept
    paths, _ = load_image_folder(root)
    assert [Path(p).relative_to(root).as_posix() for p in paths] == [
        "nevus/a.png", "nevus/deep/b.png"]


def test_load_image_folder_follows_linked_folders_once(tmp_path):
    root = _tree_with_one_image(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (4, 4)).save(elsewhere / "b.png")
    # A linked folder inside a class folder is read as a linked class folder is; a second
    # link to the same folder and a link back up (a loop) add nothing and do not hang.
    (root / "nevus" / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "nevus" / "zz_again").symlink_to(elsewhere, target_is_directory=True)
    (root / "nevus" / "loop").symlink_to(root / "nevus", target_is_directory=True)
    (root / "melanoma").symlink_to(elsewhere, target_is_directory=True)
    paths, labels = load_image_folder(root)
    assert [Path(p).relative_to(root).as_posix() for p in paths] == [
        "melanoma/b.png", "nevus/a.png", "nevus/linked/b.png"]
    assert list(labels) == ["melanoma", "nevus", "nevus"]


def _ham_tree(root, image_ids=("ISIC_0027419", "ISIC_0025030"), header="lesion_id,image_id,dx",
              encoding="utf-8"):
    (root / "images" / "nv").mkdir(parents=True)
    rows = [header] + [f"HAM_{i:07d},{image_id},nv" for i, image_id in enumerate(image_ids)]
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n", encoding=encoding)
    return root


def test_load_ham10000_matches_the_ending_in_any_case(tmp_path):
    root = _ham_tree(tmp_path)
    Image.new("RGB", (8, 6)).save(root / "images" / "nv" / "ISIC_0027419.JPG", format="JPEG")
    Image.new("RGB", (8, 6)).save(root / "images" / "nv" / "ISIC_0025030.jpg")
    paths, labels, groups = load_ham10000(root)
    assert [Path(p).name for p in paths] == ["ISIC_0027419.JPG", "ISIC_0025030.jpg"]
    assert list(labels) == ["nv", "nv"] and list(groups) == ["HAM_0000000", "HAM_0000001"]


def test_load_ham10000_never_picks_one_of_two_different_files_silently(tmp_path):
    root = _ham_tree(tmp_path)
    real = root / "images" / "nv" / "ISIC_0027419.jpg"
    Image.new("RGB", (60, 40), (200, 120, 90)).save(real)
    Image.new("RGB", (60, 40)).save(root / "images" / "nv" / "ISIC_0025030.jpg")
    # Byte-identical copies (an archive extracted twice) are one image, whichever is used.
    (root / "copy").mkdir()
    (root / "copy" / "ISIC_0027419.jpg").write_bytes(real.read_bytes())
    assert np.array_equal(read_image(load_ham10000(root)[0][0]), read_image(real))
    # Hidden folders are not searched, so a notebook checkpoint cannot clash.
    (root / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (4, 4)).save(root / ".ipynb_checkpoints" / "ISIC_0027419.jpg")
    load_ham10000(root)
    # A different file of the same name (the reviewer's 4x4 preview) is an error naming both.
    (root / "zz_preview").mkdir()
    Image.new("RGB", (4, 4)).save(root / "zz_preview" / "ISIC_0027419.jpg")
    with pytest.raises(ValueError, match="two different files hold the image 'ISIC_0027419': "
                                         "'.*copy/ISIC_0027419.jpg' and "
                                         "'.*zz_preview/ISIC_0027419.jpg'"):
        load_ham10000(root)


def test_load_ham10000_reads_a_csv_with_a_byte_order_mark(tmp_path):
    root = _ham_tree(tmp_path, image_ids=["ISIC_0027419"], encoding="utf-8-sig")
    Image.new("RGB", (8, 6)).save(root / "images" / "nv" / "ISIC_0027419.jpg")
    assert (root / "HAM10000_metadata.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    paths, _, groups = load_ham10000(root)
    assert len(paths) == 1 and list(groups) == ["HAM_0000000"]
    # A CSV that really lacks a column says which, and which columns it has.
    _ham_tree(tmp_path / "other", header="lesion,image_id,dx")
    with pytest.raises(ValueError, match=r"lacks the columns \['lesion_id'\].*"
                                         r"found \['lesion', 'image_id', 'dx'\]"):
        load_ham10000(tmp_path / "other")


@pytest.mark.parametrize(
    "mode, pixels, expected",
    [
        ("I", np.full((4, 6), 100, dtype=np.int32), np.full((4, 6), 100)),  # was 255
        ("I", np.tile(np.arange(0, 101, 20, dtype=np.int32), (4, 1)),
         np.tile(np.arange(0, 101, 20), (4, 1))),  # was stretched to 0..255
        ("I", np.full((4, 6), 65535, dtype=np.int32), np.full((4, 6), 255)),  # 16-bit data
        ("I", np.full((4, 6), 25700, dtype=np.int32), np.full((4, 6), 100)),  # as I;16 does
        ("F", np.full((4, 6), 0.5, dtype=np.float32), np.full((4, 6), 128)),  # 0-1 range
        ("F", np.full((4, 6), 0.2, dtype=np.float32), np.full((4, 6), 51)),  # was 255
        ("F", np.full((4, 6), 100.0, dtype=np.float32), np.full((4, 6), 100)),  # 0-255 range
        ("F", np.full((4, 6), 900.0, dtype=np.float32), np.full((4, 6), 255)),  # clipped
    ],
)
def test_high_bit_depth_images_map_by_a_fixed_range(tmp_path, mode, pixels, expected):
    image = Image.fromarray(pixels)
    assert image.mode == mode
    path = _save(tmp_path, "deep.tif", image)
    with Image.open(path) as reread:
        assert reread.mode == mode  # the file really is 32-bit
    out = read_image(path)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize(
    "labels, shown",
    [([[0], [9]], r"\[9\]"), ([[-1], [6]], r"\[-1\]"), ([[0.0], [6.0]], "float64")],
)
def test_load_dermamnist_checks_the_label_codes(tmp_path, labels, shown):
    path = tmp_path / "dermamnist.npz"
    np.savez(path, test_images=np.zeros((2, 28, 28, 3), dtype=np.uint8),
             test_labels=np.array(labels))
    with pytest.raises(ValueError, match=rf"dermamnist\.npz.*test_labels.*{shown}"):
        load_dermamnist(path, split="test")


def test_image_loader_names_items_that_are_not_paths(lesion_folder):
    _, paths, _ = lesion_folder
    with pytest.raises(ValueError, match=r"X\[1\] is None, not an image path"):
        ImageLoader(size=(8, 8)).fit_transform([paths[0], None])
    with pytest.raises(ValueError, match=r"X\[0\] is None, not an image path"):
        ImageLoader(size=(8, 8)).fit([None, paths[0]])
    # A NaN from a pandas merge, among others: every position is named.
    items = [paths[0], float("nan"), paths[1], 3]
    with pytest.raises(ValueError, match=r"X\[1\] is NaN.*; X\[3\] is 3 of type int"):
        ImageLoader(size=(8, 8)).transform(items)


def test_image_resizer_resize_policies():
    wide = np.zeros((1, 10, 20, 3), dtype=np.uint8)
    wide[:, :, :3] = 255  # a white band on the far left
    stretched = ImageResizer(size=(10, 10)).fit_transform(wide)  # the default: unchanged
    np.testing.assert_array_equal(
        stretched, ImageResizer(size=(10, 10), resize="stretch").fit_transform(wide))
    np.testing.assert_array_equal(stretched, resize_batch(wide, (10, 10)))
    cropped = ImageResizer(size=(10, 10), resize="crop").fit_transform(wide)
    padded = ImageResizer(size=(10, 10), resize="pad").fit_transform(wide)
    assert stretched[0, :, 0].min() > 200 and cropped[0, :, 0].max() < 30
    assert padded[0, 0].max() == 0 and padded[0, 5, 0].min() > 200
    grey = wide[..., 0]  # other layouts take the policy too
    np.testing.assert_array_equal(
        ImageResizer(size=(10, 10), resize="crop").fit_transform(grey), cropped[..., 0])
    assert clone(ImageResizer(resize="pad")).resize == "pad"
    with pytest.raises(ValueError, match="resize must be one of"):
        ImageResizer(resize="zoom").fit(wide)
    fitted = ImageResizer(size=(10, 10)).fit(wide)
    with pytest.raises(ValueError, match="resize must be one of"):
        fitted.set_params(resize="zoom").transform(wide)


def test_resize_batch_of_large_photos_works_in_small_chunks():
    # 256 photos at a time made float copies of 1.1 GB for 600x450 input; the chunk now
    # follows the images' size. Measured in a fresh process: torch's memory is not traced.
    import subprocess
    import sys

    code = (
        "import resource, numpy as np\n"
        "from skinestimator.images import resize_batch\n"
        "X = np.random.RandomState(0).randint(0, 256, (96, 450, 600, 3), dtype=np.uint8)\n"
        "resize_batch(X[:1], (150, 200))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = resize_batch(X, (150, 200))\n"
        "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024\n"
        "assert np.array_equal(out, resize_batch(X, (150, 200), chunk=96))\n"
        "print(grown / X.nbytes)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert float(result.stdout) < 1.0, result.stdout  # was about 5.5x the input


def test_image_loader_with_threads_decodes_into_its_output_only(lesion_folder):
    # The threads' decoded images were gathered in a list first: the data set twice over.
    _, paths, _ = lesion_folder
    paths = list(paths) * 4  # 600 images of 96x96 (about 16 MB out)
    out, peak = peak_memory(ImageLoader(size=(96, 96), n_jobs=2).transform, paths)
    assert peak < 1.5 * out.nbytes, peak / out.nbytes
    np.testing.assert_array_equal(out, ImageLoader(size=(96, 96)).transform(paths))
