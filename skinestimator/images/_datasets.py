"""Data-set loaders (class-per-folder trees, HAM10000, DermaMNIST) and synthetic lesion images."""

from __future__ import annotations

import csv
import filecmp
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from sklearn.utils import check_random_state

__all__ = [
    "IMAGE_EXTENSIONS",
    "DERMAMNIST_CLASSES",
    "load_image_folder",
    "load_ham10000",
    "load_dermamnist",
    "make_synthetic_lesions",
    "save_image_folder",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
DERMAMNIST_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def load_image_folder(root: str | os.PathLike, *, extensions=IMAGE_EXTENSIONS):
    """List a class-per-folder tree: ``root/<label>/<image>``.

    Parameters
    ----------
    root : str or path-like
        Folder holding one sub-folder per class (the sub-folder name is the label). Images in
        nested folders of a class folder count for that class. Files directly in ``root`` and
        hidden entries (names starting with ``"."``, and everything inside a hidden folder
        such as ``.ipynb_checkpoints``) are ignored. Symbolic links to folders are followed,
        class folders and folders inside them alike; a folder reached twice (a link loop, or
        two links to one folder) is listed once.
    extensions : tuple of str
        File endings (case-insensitive) that count as images.

    Returns
    -------
    paths : ndarray of str, shape (n,)
        Sorted by label, then file name.
    labels : ndarray of str, shape (n,)

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist or is not a folder.
    ValueError
        If ``root`` has no class sub-folders, or a class folder holds no image.

    Examples
    --------
    >>> import tempfile
    >>> from skinestimator import load_image_folder, make_synthetic_lesions, save_image_folder
    >>> root = tempfile.mkdtemp()
    >>> X, y = make_synthetic_lesions(n_samples=6, n_classes=2, random_state=0)
    >>> _ = save_image_folder(X, y, root)
    >>> paths, labels = load_image_folder(root)
    >>> len(paths), sorted(set(labels))
    (6, ['dark_round', 'red_ring'])
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: '{root}'")
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: '{root}'")
    extensions = tuple(e.lower() for e in extensions)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(
            f"'{root}' has no class sub-folders; expected one folder per condition, e.g. "
            f"'{root}/nevus/img1.jpg'"
        )
    paths, labels = [], []
    for class_dir in class_dirs:
        files = sorted(p for p in _visible_files(class_dir) if p.suffix.lower() in extensions)
        if not files:
            raise ValueError(
                f"class folder '{class_dir}' holds no images (looked for {', '.join(extensions)})"
            )
        paths.extend(str(p) for p in files)
        labels.extend([class_dir.name] * len(files))
    return np.asarray(paths, dtype=object), np.asarray(labels, dtype=object)


def _visible_files(folder: Path):
    """Every file under ``folder`` outside hidden entries, following symbolic links to folders.

    ``Path.rglob`` follows no links below its start on Python < 3.13, so a linked class folder
    was read while a linked folder inside it was skipped. Each folder is entered once, by its
    real path, which also ends link loops. Paths are returned as reached (through the links),
    not resolved.
    """
    seen = set()
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        # Sorted so that of two links to one folder the same one is always kept.
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in names:
            path = Path(directory, name)
            if not name.startswith(".") and path.is_file():
                yield path


def load_ham10000(root: str | os.PathLike, *, return_metadata: bool = False):
    """Load HAM10000: image paths, diagnoses and lesion ids.

    Expects ``root/HAM10000_metadata.csv`` and the images either as
    ``root/images/<dx>/<image_id>.jpg`` or directly as ``root/**/<image_id>.jpg``. The
    ending is matched case-insensitively (``.JPG`` too); hidden entries are ignored as in
    :func:`load_image_folder`. The CSV may start with a byte-order mark (as Excel writes it).

    Parameters
    ----------
    root : str or path-like
        The data-set folder.
    return_metadata : bool, default=False
        Also return the other metadata columns (``age``, ``sex``, ``localization``,
        ``dx_type``, ``image_id``) as a dict of arrays, for subgroup reports.

    Returns
    -------
    paths : ndarray of str, shape (10015,)
    labels : ndarray of str
        The diagnosis ``dx``: akiec, bcc, bkl, df, mel, nv, vasc.
    groups : ndarray of str
        ``lesion_id``. Several images show the same lesion: split by it (``GroupKFold``,
        ``StratifiedGroupKFold``) or scores are inflated.
    metadata : dict of ndarray, only if ``return_metadata``

    Raises
    ------
    FileNotFoundError
        If the metadata CSV or an image it lists is missing.
    ValueError
        If the CSV lacks the columns ``lesion_id``, ``image_id`` or ``dx`` (the message lists
        the columns found), or two different files under ``root`` have the name of one image
        (the message names both; byte-identical copies are accepted and the first in sorted
        order is used).

    Examples
    --------
    >>> from skinestimator import load_ham10000
    >>> paths, labels, groups = load_ham10000("../shared/data/ham10000")  # doctest: +SKIP
    >>> len(paths), len(set(labels)), len(set(groups))  # doctest: +SKIP
    (10015, 7, 7470)
    """
    root = Path(root)
    csv_path = root / "HAM10000_metadata.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"HAM10000 metadata not found: '{csv_path}'")
    # "utf-8-sig": Excel starts a saved CSV with a byte-order mark, which would otherwise
    # become part of the first column's name.
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    required = {"lesion_id", "image_id", "dx"}
    if not rows or not required <= set(columns):
        found = f"found {columns}" if columns else "found no header"
        raise ValueError(
            f"'{csv_path}' lacks the columns {sorted(required - set(columns))} "
            f"(needs {sorted(required)}; {found}" + ("" if rows else ", and no rows") + ")"
        )
    located: dict[str, list[Path]] = {}
    for path in sorted(_visible_files(root)):
        if path.suffix.lower() == ".jpg":
            located.setdefault(path.stem, []).append(path)
    paths, missing = [], []
    for row in rows:
        found_paths = located.get(row["image_id"])
        if found_paths is None:
            missing.append(row["image_id"])
            continue
        paths.append(str(_one_image_file(row["image_id"], found_paths)))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images listed in '{csv_path}' are missing under '{root}', "
            f"e.g. {missing[0]}.jpg"
        )
    paths = np.asarray(paths, dtype=object)
    labels = np.asarray([r["dx"] for r in rows], dtype=object)
    groups = np.asarray([r["lesion_id"] for r in rows], dtype=object)
    if not return_metadata:
        return paths, labels, groups
    metadata = {}
    for column in rows[0]:
        if column in ("lesion_id", "dx"):
            continue
        values = [r[column] for r in rows]
        if column == "age":
            metadata[column] = np.asarray([float(v) if v else np.nan for v in values])
        else:
            metadata[column] = np.asarray(values, dtype=object)
    return paths, labels, groups, metadata


def _one_image_file(image_id: str, candidates: list[Path]) -> Path:
    """The file of ``image_id``; several different files of that name are an error.

    Copies with the same bytes (an archive extracted twice, a linked file) are one image, so
    the first in sorted order is as good as any; files that differ leave no right choice.
    """
    first = candidates[0]
    for other in candidates[1:]:
        if not filecmp.cmp(first, other, shallow=False):
            raise ValueError(
                f"two different files hold the image {image_id!r}: '{first}' and '{other}'; "
                "remove or rename one (for instance a preview or an edited copy) so that "
                "each image id names one file"
            )
    return first


_DERMAMNIST_KEYS = tuple(
    f"{split}_{part}" for split in ("train", "val", "test") for part in ("images", "labels")
)


def load_dermamnist(path: str | os.PathLike, *, split: str = "train"):
    """Load one split of DermaMNIST (MedMNIST v2 ``.npz``) with string labels.

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file, or a folder holding exactly one ``dermamnist*.npz``. The file must
        hold the arrays ``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
        ``test_images`` and ``test_labels`` (at least the two of ``split``).
    split : {"train", "val", "test"}, default="train"

    Returns
    -------
    images : ndarray of shape (n, H, W, 3), dtype uint8
    labels : ndarray of str, the diagnosis names of :data:`DERMAMNIST_CLASSES`

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or is a folder without exactly one ``dermamnist*.npz``.
    ValueError
        If ``split`` is unknown, or the file is not a DermaMNIST ``.npz`` (not an ``.npz``
        archive, or without the arrays of ``split``, or with labels that are not the integer
        class codes 0-6); the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DermaMNIST file not found: '{path}'")
    if path.is_dir():
        candidates = sorted(path.glob("dermamnist*.npz"))
        if len(candidates) != 1:
            raise FileNotFoundError(f"expected one dermamnist*.npz in '{path}', found {candidates}")
        path = candidates[0]
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    expected = ", ".join(_DERMAMNIST_KEYS)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(
            f"'{path}' is not a DermaMNIST .npz file (a NumPy .npz archive with the arrays "
            f"{expected})"
        ) from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(
            f"'{path}' is not a DermaMNIST .npz file: it holds a single array, expected an "
            f".npz archive with the arrays {expected}"
        )
    with data:
        missing = [k for k in (f"{split}_images", f"{split}_labels") if k not in data.files]
        if missing:
            raise ValueError(
                f"'{path}' is not a DermaMNIST .npz file: it lacks {', '.join(missing)} "
                f"(holds {', '.join(data.files) or 'no arrays'}; expected {expected})"
            )
        images = data[f"{split}_images"]
        codes = data[f"{split}_labels"].reshape(-1)
    n_classes = len(DERMAMNIST_CLASSES)
    if codes.dtype.kind not in "iu":
        raise ValueError(
            f"'{path}': {split}_labels must hold integer class codes 0-{n_classes - 1}, got "
            f"dtype {codes.dtype}"
        )
    # Checked because indexing would wrap -1 round to 'vasc' and give a bare IndexError for 7.
    bad = np.unique(codes[(codes < 0) | (codes >= n_classes)])
    if bad.size:
        raise ValueError(
            f"'{path}': {split}_labels holds codes outside 0-{n_classes - 1} "
            f"({', '.join(DERMAMNIST_CLASSES)}): {bad[:10].tolist()}"
        )
    return images, np.asarray(DERMAMNIST_CLASSES, dtype=object)[codes]


# name -> (fill colour, outline colour, shape). The classes differ in shape *and* colour, the way
# real lesion classes differ in morphology and pigment, so both a CNN trained from scratch and a
# pretrained one can learn them from a few dozen images.
_SYNTHETIC_CLASSES = {
    "dark_round": ((70, 40, 30), None, "ellipse"),
    "red_ring": (None, (170, 40, 50), "ring"),
    "pale_square": ((205, 170, 150), (150, 110, 90), "square"),
    "blue_cross": ((60, 70, 140), None, "cross"),
    "brown_triangle": ((120, 70, 40), None, "triangle"),
    "spotted": ((90, 50, 40), None, "spots"),
}


def make_synthetic_lesions(
    n_samples: int = 100,
    *,
    image_size: tuple[int, int] = (64, 64),
    n_classes: int = 3,
    noise: float = 8.0,
    random_state=None,
):
    """Draw a learnable synthetic "lesion" image task (shapes and pigments on skin tones).

    Each image is a skin-coloured background with lighting gradient and noise, and one lesion
    whose shape and colour decide the class; position, size and rotation vary. Use it to try the
    library without data, and in tests that must prove a model learns.

    Parameters
    ----------
    n_samples : int, default=100
    image_size : (height, width), default=(64, 64)
    n_classes : int, default=3
        2 to 6 classes: dark_round, red_ring, pale_square, blue_cross, brown_triangle, spotted.
    noise : float, default=8.0
        Standard deviation of the pixel noise (0–255 scale).
    random_state : int, RandomState or None

    Returns
    -------
    images : ndarray of shape (n_samples, height, width, 3), dtype uint8
    labels : ndarray of str, shape (n_samples,)
        Balanced: classes cycle, then the order is shuffled.

    Examples
    --------
    >>> from skinestimator import make_synthetic_lesions
    >>> X, y = make_synthetic_lesions(n_samples=10, image_size=(32, 32), random_state=0)
    >>> X.shape, X.dtype, sorted(set(y))
    ((10, 32, 32, 3), dtype('uint8'), ['dark_round', 'pale_square', 'red_ring'])
    """
    names = list(_SYNTHETIC_CLASSES)
    if not 2 <= n_classes <= len(names):
        raise ValueError(f"n_classes must be between 2 and {len(names)}, got {n_classes}")
    rng = check_random_state(random_state)
    height, width = int(image_size[0]), int(image_size[1])
    labels = np.asarray([names[i % n_classes] for i in range(n_samples)], dtype=object)
    labels = labels[rng.permutation(n_samples)]
    images = np.empty((n_samples, height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for i, label in enumerate(labels):
        skin = np.array([225, 180, 150]) + rng.uniform(-25, 15, size=3)
        gradient = 1.0 + 0.12 * (
            (xx / width) * rng.uniform(-1, 1) + (yy / height) * rng.uniform(-1, 1)
        )
        background = skin[None, None, :] * gradient[..., None]
        canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
        _draw_lesion(canvas, label, rng)
        canvas = canvas.filter(ImageFilter.GaussianBlur(radius=max(height, width) / 128))
        pixels = np.asarray(canvas, dtype=np.float64) + rng.normal(
            0, noise, size=(height, width, 3)
        )
        images[i] = np.clip(pixels, 0, 255).astype(np.uint8)
    return images, labels


def _draw_lesion(canvas: Image.Image, label: str, rng: np.random.RandomState) -> None:
    width, height = canvas.size
    fill, outline, shape = _SYNTHETIC_CLASSES[label]
    jitter = rng.uniform(-18, 18, size=3)
    fill = (
        None if fill is None else tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(fill, jitter))
    )
    outline = (
        None
        if outline is None
        else tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(outline, jitter))
    )
    radius = rng.uniform(0.2, 0.32) * min(width, height)
    cx = width / 2 + rng.uniform(-0.12, 0.12) * width
    cy = height / 2 + rng.uniform(-0.12, 0.12) * height
    line = max(1, int(radius / 3.5))
    draw = ImageDraw.Draw(canvas)
    box = [
        cx - radius,
        cy - radius * rng.uniform(0.75, 1.0),
        cx + radius,
        cy + radius * rng.uniform(0.75, 1.0),
    ]
    if shape == "ellipse":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=outline, width=line)
    elif shape == "square":
        draw.regular_polygon(
            (cx, cy, radius),
            4,
            rotation=rng.uniform(0, 90),
            fill=fill,
            outline=outline,
            width=max(1, line // 2),
        )
    elif shape == "triangle":
        draw.regular_polygon((cx, cy, radius * 1.1), 3, rotation=rng.uniform(0, 120), fill=fill)
    elif shape == "cross":
        arm = radius / 2.5
        draw.rectangle([cx - radius, cy - arm, cx + radius, cy + arm], fill=fill)
        draw.rectangle([cx - arm, cy - radius, cx + arm, cy + radius], fill=fill)
    else:  # spots
        for _ in range(int(rng.randint(5, 9))):
            sx = cx + rng.uniform(-radius, radius)
            sy = cy + rng.uniform(-radius, radius)
            r = radius * rng.uniform(0.12, 0.22)
            draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=fill)


def save_image_folder(images, labels, root: str | os.PathLike, *, format: str = "png"):
    """Write images into a class-per-folder tree ``root/<label>/<index>.<format>``.

    ``<index>`` is the image's position in ``images``, zero-padded to five digits
    (``00000.png``, ``00001.png``, ...). Existing files are never overwritten: if any of the
    files to write already exists (for instance after a second call on the same ``root``),
    nothing is written and a ``FileExistsError`` names it. Write each batch into its own
    ``root``, or delete the old tree first.

    Parameters
    ----------
    images : array of shape (n, H, W, 3) or (n, H, W), dtype uint8
        RGB images, or greyscale ones (saved as single-channel files).
    labels : array-like of shape (n,)
        The class of each image, used (as ``str(label)``) as a folder name directly under
        ``root``. A label must be a plain, visible folder name: not empty, not ``"."`` or
        ``".."``, not starting with ``"."`` (:func:`load_image_folder` skips hidden folders),
        and without ``"/"``, ``"\\"`` or NUL characters.
    root : str or path-like
        Created if missing.
    format : {"png", "jpg"}, default="png"

    Returns
    -------
    paths : ndarray of str, shape (n,)
        In the order of ``images``.

    Raises
    ------
    ValueError
        If ``images`` is not a uint8 array of one of the shapes above, the number of labels
        differs from the number of images, a label is not a valid folder name (the message
        names it), or ``format`` is unknown.
    FileExistsError
        If a file to write already exists; nothing is written then.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from pathlib import Path
    >>> from skinestimator import save_image_folder
    >>> root = tempfile.mkdtemp()
    >>> images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    >>> paths = save_image_folder(images, ["nevus", "melanoma"], root)
    >>> [Path(p).relative_to(root).as_posix() for p in paths]
    ['nevus/00000.png', 'melanoma/00001.png']
    >>> save_image_folder(images, ["nevus", "melanoma"], root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: '...00000.png' already exists; save_image_folder never overwrites files. ...
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8:
        raise ValueError(f"images must have dtype uint8, got {images.dtype}")
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise ValueError(
            "images must be an array of shape (n, H, W, 3) (RGB) or (n, H, W) (grey), "
            f"got shape {images.shape}"
        )
    if labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"expected one label per image: {len(images)} images but labels of shape "
            f"{labels.shape}"
        )
    if format not in ("png", "jpg"):
        raise ValueError(f"format must be 'png' or 'jpg', got {format!r}")
    root = Path(root)
    names = [str(label) for label in labels]
    for name in dict.fromkeys(names):
        _check_label_folder(name, root)
    paths = [root / name / f"{i:05d}.{format}" for i, name in enumerate(names)]
    for path in paths:
        if os.path.lexists(path):
            raise FileExistsError(
                f"'{path}' already exists; save_image_folder never overwrites files. Write "
                "into a new root folder or delete the old tree first."
            )
    options = {"quality": 95} if format == "jpg" else {}
    pil_format = {"png": "PNG", "jpg": "JPEG"}[format]
    for image, path in zip(images, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        # "xb": even a file created meanwhile by someone else is not overwritten.
        with open(path, "xb") as handle:
            Image.fromarray(image).save(handle, format=pil_format, **options)
    return np.asarray([str(p) for p in paths], dtype=object)


def _check_label_folder(name: str, root: Path) -> None:
    """Raise ``ValueError`` unless ``name`` is a plain visible folder name directly in ``root``."""
    problem = None
    if name in ("", ".", ".."):
        problem = "is not a folder name"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif "\0" in name:
        problem = "contains a NUL character"
    elif name.startswith("."):
        problem = "starts with '.', and load_image_folder skips such hidden folders"
    elif (root / name).resolve().parent != root.resolve():
        problem = "resolves to a folder outside root (through a symbolic link?)"
    if problem is not None:
        raise ValueError(
            f"label {name!r} cannot be used as a class folder under '{root}': it {problem}"
        )
