"""Safe model files (safetensors + JSON model card + SHA-256) and ONNX export."""

from __future__ import annotations

import json
import os
import pickle
import struct

import joblib
import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from sklearn.base import clone

from skinestimator import SkinLesionClassifier, make_synthetic_lesions, save_image_folder
from skinestimator.deploy import (
    ModelFileError,
    _model_file,
    export_onnx,
    load_model,
    read_model_card,
    save_model,
)
from tests.conftest import run_python


@pytest.fixture(scope="module")
def data():
    return make_synthetic_lesions(n_samples=48, image_size=(32, 32), n_classes=3, random_state=0)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return SkinLesionClassifier(
        backbone="seed_cnn", max_epochs=2, image_size=(32, 32), random_state=0
    ).fit(X, y)


@pytest.fixture()
def model_file(fitted, tmp_path):
    path = tmp_path / "model.skin"
    save_model(fitted, path, training_data={"class_counts": {"a": 1}}, notes="unit test")
    return path


def _assert_refused(path, *words, file_itself=True):
    """load_model refuses ``path`` with one line naming it and ``words``; where the file itself
    is bad (not only the model it describes), read_model_card refuses it alike."""
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    if file_itself:
        # read_model_card verifies the file from its bytes, without torch: the same refusal.
        with pytest.raises(ModelFileError) as card_info:
            read_model_card(path)
        assert str(card_info.value) == message
    assert "\n" not in message, "messages must fit on one line"
    assert str(path) in message, "messages must name the file"
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def test_round_trip_gives_identical_predictions(fitted, data, model_file, tmp_path):
    X, _ = data
    loaded = load_model(model_file)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.classes_.dtype == fitted.classes_.dtype  # object labels stay object
    assert loaded.image_size_ == fitted.image_size_
    assert loaded.get_params() == {**fitted.get_params(), "callbacks": None}
    # And through image files, the path most users take.
    paths = save_image_folder(X[:6], np.asarray(["x"] * 6), tmp_path / "imgs")
    np.testing.assert_array_equal(loaded.predict_proba(list(paths)),
                                  fitted.predict_proba(list(paths)))


def test_model_card_records_what_a_reader_needs(fitted, model_file):
    card = read_model_card(model_file)
    assert card["classes"] == list(fitted.classes_)
    assert card["backbone"] == "seed_cnn"
    assert card["preprocessing"]["image_size"] == [32, 32]
    assert card["params"]["max_epochs"] == 2 and card["params_tuples"] == ["image_size"]
    assert card["versions"]["torch"] == torch.__version__
    assert card["training_data"] == {"class_counts": {"a": 1}}
    assert card["notes"] == "unit test"
    assert len(card["history"]) == len(fitted.history_)
    assert len(card["sha256"]) == 64
    # The metrics default to the validation scores of the epoch whose weights were kept.
    assert 0.0 <= card["metrics"]["valid_bacc"] <= 1.0
    assert "not recorded" in card["metrics"]["source"]  # fit(groups=) may have grouped it
    # The file is an ordinary safetensors file, readable by other tools.
    (n_header,) = struct.unpack("<Q", model_file.read_bytes()[:8])
    header = json.loads(model_file.read_bytes()[8 : 8 + n_header])
    assert header["__metadata__"]["format"] == "skinestimator-model"


def test_one_byte_changed_is_refused(model_file):
    original = model_file.read_bytes()
    (n_header,) = struct.unpack("<Q", original[:8])
    card_at = original.index(b'\\"backbone\\"')  # inside the JSON model card
    positions = {
        "weights": len(original) - 5,
        "weights_start": 8 + n_header + 3,
        "model_card": card_at + 3,
        "length_prefix": 0,
    }
    for where, position in positions.items():
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        model_file.write_bytes(bytes(damaged))
        message = _assert_refused(model_file)
        if where in ("weights", "weights_start", "model_card"):
            assert "integrity check failed" in message, (where, message)
    model_file.write_bytes(original)
    load_model(model_file)  # the undamaged bytes still load


def test_skinestimator_info_verifies_a_model_without_loading_torch(model_file):
    # The digest is computed from the file's own bytes, so `info` answers in a fraction of the
    # time torch takes to import (about 2 s here).
    script = (
        "import contextlib, io, sys\n"
        "from skinestimator.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    code = main(['info', {str(model_file)!r}])\n"
        "print(code, 'torch' in sys.modules, 'no corruption found' in out.getvalue())\n"
    )
    assert run_python(script).split() == ["0", "False", "True"]


def test_a_tensor_dtype_outside_the_byte_readers_table_is_verified_through_torch(model_file):
    state = st_load(model_file.read_bytes())
    state["extra"] = torch.arange(6, dtype=torch.int32).to(torch.uint16)  # safetensors' U16
    _rewrite(model_file, state=state)
    data = model_file.read_bytes()
    header = _model_file._parse_header(model_file, data)
    assert _model_file._file_digest(header["__metadata__"], header, data) is None
    read_model_card(model_file)  # verified by hashing the tensors torch loads instead
    damaged = bytearray(model_file.read_bytes())
    damaged[-1] ^= 0x01
    model_file.write_bytes(bytes(damaged))
    _assert_refused(model_file, "integrity check failed")


def test_truncated_file_is_refused(model_file):
    original = model_file.read_bytes()
    model_file.write_bytes(original[: len(original) // 2])
    _assert_refused(model_file, "truncated")
    model_file.write_bytes(original[:20])
    _assert_refused(model_file, "truncated")
    model_file.write_bytes(original[:5])
    _assert_refused(model_file, "truncated")
    model_file.write_bytes(b"")
    _assert_refused(model_file, "empty")
    model_file.write_bytes(original + b"\0")
    _assert_refused(model_file, "unexpected bytes")


class _Exploit:
    """Unpickling this would create a marker file: the loader must never do it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.skin"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    _assert_refused(path, "pickle")
    assert not marker.exists()
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    _assert_refused(tmp_path / "weights.pt", "pickle")


def test_other_files_are_refused_clearly(tmp_path):
    _assert_refused(tmp_path / "missing.skin", "not found")
    _assert_refused(tmp_path, "folder")
    text = tmp_path / "notes.skin"
    text.write_text("hello, this is not a model at all")
    _assert_refused(text, "not a skinestimator model file")
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(st_save({"w": torch.zeros(3)}))
    _assert_refused(plain, "not a skinestimator model file")


def _rewrite(path, *, card=None, state=None, format_version=None, card_json=None):
    """Write a file with changed content and a digest as its writer computes it (what a newer
    version, another writer or someone editing the file might write). A newer format version
    is signed as that version's writer would sign it: with its own version in the digest."""
    from safetensors.torch import load as st_load

    if card_json is None:
        if card is None:
            card = read_model_card(path)
        card = {k: v for k, v in card.items() if k != "sha256"}
        card_json = json.dumps(card)
    version = format_version or _model_file.FORMAT_VERSION
    metadata = {
        "format": "skinestimator-model",
        "format_version": str(version),
        "model_card": card_json,
    }
    tensors = state if state is not None else st_load(path.read_bytes())
    reader_version = _model_file.FORMAT_VERSION
    _model_file.FORMAT_VERSION = version
    try:
        metadata["sha256"] = _model_file._digest(metadata, tensors)
    finally:
        _model_file.FORMAT_VERSION = reader_version
    path.write_bytes(st_save(tensors, metadata=metadata))


def test_incompatible_files_are_refused(model_file):
    original = model_file.read_bytes()
    # A newer writer hashes its own format version in: the file must be reported as newer,
    # not as corrupted (the digest used to be checked first, with this reader's version).
    _rewrite(model_file, format_version=2)
    message = _assert_refused(model_file, "format version", "newer", "upgrade")
    assert "integrity" not in message
    with pytest.raises(ModelFileError, match="newer"):
        read_model_card(model_file)

    model_file.write_bytes(original)
    card = read_model_card(model_file)
    card["params"]["quantum_flux"] = 3
    _rewrite(model_file, card=card)
    _assert_refused(model_file, "quantum_flux", "upgrade", file_itself=False)

    model_file.write_bytes(original)
    state = {"body.blocks.0.0.weight": torch.zeros(4, 3, 3, 3)}
    _rewrite(model_file, state=state)
    _assert_refused(model_file, "do not fit", file_itself=False)


def test_integer_classes_keep_their_type(tmp_path):
    X, y = make_synthetic_lesions(n_samples=12, image_size=(16, 16), n_classes=2,
                                  random_state=1)
    y = np.where(y == y[0], 3, 7)
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, random_state=0,
                               validation_fraction=None).fit(X, y)
    save_model(clf, tmp_path / "int.skin")
    loaded = load_model(tmp_path / "int.skin")
    assert loaded.classes_.dtype.kind == "i"
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_string_classes_keep_their_dtype(tmp_path):
    # Labels from pandas are object arrays; a loaded model used to return '<U..' instead.
    X, y = make_synthetic_lesions(n_samples=12, image_size=(16, 16), n_classes=2,
                                  random_state=1)
    for labels in (np.where(y == y[0], "mel", "nevus").astype(object),
                   np.where(y == y[0], "mel", "nevus")):
        clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, random_state=0,
                                   validation_fraction=None).fit(X, labels)
        save_model(clf, tmp_path / "str.skin")
        loaded = load_model(tmp_path / "str.skin")
        assert loaded.classes_.dtype == clf.classes_.dtype
        assert loaded.predict(X).dtype == clf.predict(X).dtype
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_class_weight_dict_keeps_its_key_types(tmp_path):
    X, y = make_synthetic_lesions(n_samples=12, image_size=(16, 16), n_classes=2,
                                  random_state=1)
    y = np.where(y == y[0], 3, 7)
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, random_state=0,
                               validation_fraction=None, class_weight={3: 3.0, 7: 1}).fit(X, y)
    save_model(clf, tmp_path / "weighted.skin")
    loaded = load_model(tmp_path / "weighted.skin")
    assert loaded.class_weight == {3: 3.0, 7: 1}
    assert [type(k) for k in loaded.class_weight] == [int, int]
    assert "class_weight" not in loaded.model_card_["params_not_saved"]
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # Any str / int / float / bool keys survive; a dict JSON cannot hold is listed as not saved.
    clf.set_params(class_weight={"a": 1.0, 2: 2.0, 0.5: 3.0, True: 4.0, np.int64(5): 5.0})
    params, dropped, _, dicts = _model_file._serialisable_params(clf)
    card = json.loads(json.dumps({"params": params, "params_dicts": dicts}))
    restored = _model_file._params_from_card(card, tmp_path)["class_weight"]
    assert restored == {"a": 1.0, 2: 2.0, 0.5: 3.0, True: 4.0, 5: 5.0}
    assert [type(k) for k in restored] == [str, int, float, bool, int]
    clf.set_params(class_weight={(1, 2): 1.0})
    assert "class_weight" in _model_file._serialisable_params(clf)[1]


def _pooled_linear(n_classes):
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(3, n_classes))


def test_unfitted_factory_backbone_and_pickle(fitted, data, tmp_path):
    with pytest.raises(ModelFileError, match="not fitted"):
        save_model(SkinLesionClassifier(), tmp_path / "x.skin")
    X, y = data
    custom = SkinLesionClassifier(backbone=_pooled_linear, max_epochs=1,
                                  validation_fraction=None).fit(X[:12], y[:12])
    with pytest.raises(ModelFileError, match="named backbone"):
        save_model(custom, tmp_path / "x.skin")
    assert not os.path.exists(tmp_path / "x.skin")
    # Pickle / joblib keep working (for files from a trusted source only).
    joblib.dump(fitted, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "clf.joblib").predict_proba(X),
                                  fitted.predict_proba(X))


def test_a_pipeline_is_refused_with_what_to_do_instead(data, tmp_path):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    from skinestimator import ColorConstancy, ImageLoader

    X, y = data
    keep = np.concatenate([np.flatnonzero(y == c)[:4] for c in np.unique(y)])
    X, y = X[keep], y[keep]
    paths = save_image_folder(X, y, tmp_path / "images")
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, random_state=0,
                               validation_fraction=None)
    pipe = make_pipeline(ImageLoader(size=(32, 32)), clf).fit(paths, y)
    for write in (save_model, export_onnx):
        with pytest.raises(ModelFileError) as info:
            write(pipe, tmp_path / "pipe.out")
        message = str(info.value)
        assert "got a Pipeline" in message and "not fitted" not in message
        assert "(ImageLoader)" in message and "pipeline[-1]" in message
    with pytest.raises(ModelFileError, match="ColorConstancy.*pickle/joblib"):
        save_model(make_pipeline(ColorConstancy(), clf), tmp_path / "pipe.skin")
    with pytest.raises(ModelFileError, match="best_estimator_"):
        save_model(GridSearchCV(clf, {"max_epochs": [1]}, cv=2).fit(X, y),
                   tmp_path / "search.skin")
    assert not list(tmp_path.glob("*.skin")) and not list(tmp_path.glob("*.out"))
    # What the message promises: the classifier alone, saved, predicts as the pipeline did.
    loaded = load_model(save_model(pipe[-1], tmp_path / "clf.skin"))
    np.testing.assert_array_equal(loaded.predict_proba(paths), pipe.predict_proba(paths))


def test_onnx_probabilities_match_predict_proba(fitted, data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    X, _ = data
    path = export_onnx(fitted, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = fitted.to_image_array(X)
    assert images.dtype == np.uint8
    expected = fitted.predict_proba(X)
    onnx_proba = session.run(None, {"image": images})[0]
    assert onnx_proba.shape == expected.shape
    np.testing.assert_allclose(onnx_proba, expected, atol=1e-4, rtol=0)
    # The batch axis is dynamic and the classes travel with the file.
    single = session.run(None, {"image": images[:1]})[0]
    np.testing.assert_allclose(single, expected[:1], atol=1e-4, rtol=0)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == list(fitted.classes_)
    assert json.loads(meta["image_size"]) == [32, 32]


def test_onnx_includes_test_time_augmentation(fitted, data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    X, _ = data
    fitted.set_params(tta=True)
    try:
        path = export_onnx(fitted, tmp_path / "tta.onnx")
        expected = fitted.predict_proba(X[:8])
    finally:
        fitted.set_params(tta=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": fitted.to_image_array(X[:8])})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert np.abs(got - fitted.predict_proba(X[:8])).max() > 1e-6, "tta must change the output"


def test_concurrent_saves_to_one_path_leave_one_whole_model(fitted, data, tmp_path):
    import threading

    X, y = data
    other = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, image_size=(16, 16),
                                 random_state=0, validation_fraction=None).fit(X[:12], y[:12])
    sizes = {"fitted": [32, 32], "other": [16, 16]}
    path = tmp_path / "shared.skin"
    for round_ in range(20):
        barrier, errors = threading.Barrier(2), []

        def save(clf, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                save_model(clf, path)
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(clf,)) for clf in (fitted, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, (round_, errors)
        # The file always loads and holds one of the two models, whole.
        loaded = load_model(path)
        assert [*loaded.image_size_] in sizes.values(), round_
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.skin"], "temp files left"
    # The permissions of any new file (umask applied), not mkstemp's owner-only 0600.
    umask = os.umask(0)
    os.umask(umask)
    if os.name == "posix":
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_the_digest_is_not_described_as_tamper_proof():
    """The SHA-256 is unkeyed: whoever edits a file can recompute it, so no text may promise
    that tampering is detected; they say how to check a file from someone else instead."""
    from pathlib import Path

    from skinestimator import deploy

    texts = {
        "deploy": deploy.__doc__,
        "_model_file": _model_file.__doc__,
        "ModelFileError": ModelFileError.__doc__,
        "save_model": save_model.__doc__,
        "load_model": load_model.__doc__,
    }
    root = Path(__file__).resolve().parents[1]
    for name in ("README.md", "docs/command_line.md"):
        if (root / name).exists():
            texts[name] = (root / name).read_text(encoding="utf-8")
    for name, text in texts.items():
        # "a tampered file is refused", "tampered with": promises the digest cannot keep.
        assert "tampered" not in text.lower(), name
    for name in ("deploy", "_model_file", "save_model", "load_model", "README.md",
                 "docs/command_line.md"):
        if name in texts:
            assert "channel you trust" in " ".join(texts[name].split()), name


def test_machine_specific_settings_fall_back_when_this_machine_lacks_them(model_file):
    from skinestimator._runtime import resolve_device

    original = model_file.read_bytes()
    card = read_model_card(model_file)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for device in ("mps", "xpu", f"cuda:{n_gpus}"):
        try:
            resolve_device(device)
            continue  # this machine has it: nothing to fall back from
        except ValueError:
            pass
        card["params"]["device"] = device
        _rewrite(model_file, card=card)
        loaded = load_model(model_file)
        assert loaded.device == "auto" and loaded.device_ == resolve_device("auto"), device
    # num_workers above this machine's CPU count (or a crafted card's thousands) becomes
    # "auto"; a value the machine can honour is kept.
    card["params"]["device"] = "cpu"
    for workers, expected in ((os.cpu_count() + 1, "auto"), (10_000, "auto"), (0, 0)):
        card["params"]["num_workers"] = workers
        _rewrite(model_file, card=card)
        assert load_model(model_file).num_workers == expected, workers
    model_file.write_bytes(original)


def test_an_invalid_hyperparameter_is_named_not_called_a_weight_mismatch(model_file):
    card = read_model_card(model_file)
    for name, value in (("optimizer", ["adamw"]), ("lr", -1.0), ("device", 7),
                        ("max_epochs", "many")):
        bad = json.loads(json.dumps(card))
        bad["params"][name] = value
        _rewrite(model_file, card=bad)
        message = _assert_refused(model_file, f"hyperparameter {name!r}", "invalid",
                                  file_itself=False)
        assert "do not fit" not in message, message


def test_save_model_refuses_summaries_its_readers_could_not_use(fitted, data, tmp_path):
    _, y = data
    path = tmp_path / "model.skin"
    _, counts = np.unique(y, return_counts=True)
    bad = [
        ({"training_data": {"class_counts": counts}}, "class_counts"),
        ({"training_data": {"class_counts": list(counts)}}, r"dict\(zip"),
        ({"training_data": {"class_counts": {"a": 3, "b": None}}}, "'b'.*non-negative"),
        ({"training_data": {"class_counts": {"a": "13"}}}, "non-negative integer"),
        ({"training_data": {"class_counts": {"a": -1}}}, "non-negative integer"),
        ({"training_data": {"class_counts": {"a": True}}}, "non-negative integer"),
        ({"training_data": [("class_counts", 3)]}, "training_data must be a mapping"),
        ({"metrics": [0.5]}, "metrics must be a mapping"),
        ({"metrics": {"bacc": [0.5]}}, r"metrics\['bacc'\]"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            save_model(fitted, path, **kwargs)
        assert not path.exists()
    # Labels to counts, numpy integers included, are what the readers expect.
    good = {"class_counts": dict(zip(fitted.classes_, counts)), "source": "synthetic"}
    save_model(fitted, path, training_data=good, metrics={"bacc": np.float32(0.5)})
    card = read_model_card(path)
    assert card["training_data"]["class_counts"] == {
        str(c): int(n) for c, n in zip(fitted.classes_, counts)}


def test_a_small_file_cannot_make_the_loader_build_a_huge_network(model_file, monkeypatch):
    original = model_file.read_bytes()
    card = read_model_card(model_file)

    def must_not_build(*args, **kwargs):
        raise AssertionError("the network was built before the weights were checked")

    monkeypatch.setattr(SkinLesionClassifier, "_restore", must_not_build)
    # A huge timm backbone with the small network's weights (a 13 s, 3 GB build otherwise).
    huge = json.loads(json.dumps(card))
    huge["backbone"] = huge["params"]["backbone"] = "vit_huge_patch14_224"
    _rewrite(model_file, card=huge)
    _assert_refused(model_file, "do not fit", "vit_huge_patch14_224", file_itself=False)
    # Millions of classes, with the real weights or with one number.
    many = json.loads(json.dumps(card))
    many.update(classes=list(range(20_000)), classes_kind="int")
    _rewrite(model_file, card=many)
    _assert_refused(model_file, "do not fit", "20000 classes", file_itself=False)
    many["classes"] = list(range(2_000_000))
    model_file.write_bytes(original)
    _rewrite(model_file, card=many, state={"w": torch.zeros(1)})
    _assert_refused(model_file, "2000000 classes", "do not fit", file_itself=False)
    model_file.write_bytes(original)
    monkeypatch.undo()
    assert load_model(model_file).classes_.tolist() == card["classes"]


@pytest.mark.parametrize("field, edit", [
    ("the card", lambda c: [1, 2]),
    ("the card", lambda c: None),
    ("'preprocessing'", lambda c: c.pop("preprocessing")),
    ("'preprocessing.image_size'", lambda c: c["preprocessing"].update(image_size="ab")),
    ("'params'", lambda c: c.update(params=[1])),
    ("'history'", lambda c: c.update(history=[1, 2])),
    ("'classes'", lambda c: c.update(classes_kind="int")),
    ("'classes'", lambda c: c.update(classes="abc")),
    ("'classes'", lambda c: c.update(classes=[])),
    ("'classes_kind'", lambda c: c.update(classes_kind="complex")),
    ("'versions'", lambda c: (c.update(versions="x"), c["params"].update(newp=1))),
    ("'params_tuples'", lambda c: c.update(params_tuples=5)),
    ("'params_dicts.class_weight'", lambda c: c.update(
        params_dicts={"class_weight": [[[1], 2]]})),
    ("'training_data'", lambda c: c.update(training_data=[3, 4])),
    ("'metrics'", lambda c: c.update(metrics="good")),
])
def test_a_malformed_model_card_is_refused_naming_the_field(model_file, field, edit):
    card = read_model_card(model_file)
    card.pop("sha256")
    result = edit(card)
    replaced = result if field == "the card" else card
    _rewrite(model_file, card_json=json.dumps(replaced))
    _assert_refused(model_file, "model card is malformed", field)
    with pytest.raises(ModelFileError, match="model card is malformed"):
        read_model_card(model_file)


def test_onnx_export_refuses_an_opset_it_could_not_write(data, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    X, y = data

    def padded(n_classes):  # an explicit Pad, as EfficientNet-Lite's "same" padding has
        return torch.nn.Sequential(torch.nn.ZeroPad2d(1), torch.nn.Conv2d(3, 4, 3),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                   torch.nn.Linear(4, n_classes))

    clf = SkinLesionClassifier(backbone=padded, max_epochs=1, image_size=(16, 16),
                               random_state=0, validation_fraction=None).fit(X[:12], y[:12])

    def opset(path):
        return [o.version for o in onnx.load(str(path)).opset_import
                if o.domain in ("", "ai.onnx")]

    # The exporter cannot take Pad below opset 18; it used to write opset 18 silently.
    with pytest.raises(ValueError, match="could not convert .* to opset 17 .*opset 18"):
        export_onnx(clf, tmp_path / "pad17.onnx", opset_version=17)
    assert not (tmp_path / "pad17.onnx").exists()
    assert opset(export_onnx(clf, tmp_path / "pad18.onnx", opset_version=18)) == [18]
    assert len(opset(export_onnx(clf, tmp_path / "default.onnx"))) == 1
    with pytest.raises(ValueError, match="opset_version must be an int"):
        export_onnx(clf, tmp_path / "x.onnx", opset_version=17.0)


def test_color_constancy_travels_with_the_model_file_and_the_onnx_graph(data, tmp_path):
    X, y = data
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, image_size=(32, 32),
                               color_constancy=6, random_state=0).fit(X, y)
    relit = np.clip(X * np.float32([1.0, 0.8, 0.6]), 0, 255).astype(np.uint8)
    loaded = load_model(save_model(clf, tmp_path / "cc.skin"))
    assert loaded.color_constancy == 6
    assert read_model_card(tmp_path / "cc.skin")["preprocessing"]["color_constancy"] == 6
    np.testing.assert_array_equal(loaded.predict_proba(relit), clf.predict_proba(relit))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(export_onnx(clf, tmp_path / "cc.onnx")),
                                   providers=["CPUExecutionProvider"])
    # The graph balances the colours itself: the caller passes the photo's own pixels.
    np.testing.assert_allclose(session.run(None, {"image": relit})[0],
                               clf.predict_proba(relit), atol=1e-4, rtol=0)


def test_a_color_constancy_changed_after_fit_is_not_saved_as_the_models(fitted, data,
                                                                         tmp_path):
    X, _ = data
    before = fitted.predict_proba(X)
    fitted.set_params(color_constancy=6)
    try:
        # The fitted network is unchanged; a file claiming otherwise would load as another model.
        np.testing.assert_array_equal(fitted.predict_proba(X), before)
        with pytest.raises(ModelFileError, match=r"color_constancy is 6 but the network was "
                                                 r"fitted with None .*set_params\(color_"
                                                 r"constancy=None\)"):
            save_model(fitted, tmp_path / "changed.skin")
    finally:
        fitted.set_params(color_constancy=None)
    assert not (tmp_path / "changed.skin").exists()
    # Continued training applies the new setting, and the model then saves as what it is.
    X, y = data
    continued = clone(fitted).fit(X, y).set_params(color_constancy=6)
    continued.partial_fit(X, y)
    assert continued.net_.module_.color_constancy == 6
    loaded = load_model(save_model(continued, tmp_path / "continued.skin"))
    np.testing.assert_array_equal(loaded.predict_proba(X), continued.predict_proba(X))
