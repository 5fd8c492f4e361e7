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
from safetensors.torch import save as st_save

from skinestimator import SkinLesionClassifier, make_synthetic_lesions, save_image_folder
from skinestimator.deploy import (
    ModelFileError,
    _model_file,
    export_onnx,
    load_model,
    read_model_card,
    save_model,
)


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


def _assert_refused(path, *words):
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
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


def _rewrite(path, *, card=None, state=None, format_version=None):
    """Write a validly signed file with changed content (what a newer version might write)."""
    from safetensors.torch import load as st_load

    old_card = read_model_card(path)
    old_card.pop("sha256")
    metadata = {
        "format": "skinestimator-model",
        "format_version": str(format_version or _model_file.FORMAT_VERSION),
        "model_card": json.dumps(card or old_card),
    }
    tensors = state if state is not None else st_load(path.read_bytes())
    metadata["sha256"] = _model_file._digest(metadata, tensors)
    path.write_bytes(st_save(tensors, metadata=metadata))


def test_incompatible_files_are_refused(model_file):
    original = model_file.read_bytes()
    _rewrite(model_file, format_version=2)
    _assert_refused(model_file, "format version")

    model_file.write_bytes(original)
    card = read_model_card(model_file)
    card["params"]["quantum_flux"] = 3
    _rewrite(model_file, card=card)
    _assert_refused(model_file, "quantum_flux", "upgrade")

    model_file.write_bytes(original)
    state = {"body.blocks.0.0.weight": torch.zeros(4, 3, 3, 3)}
    _rewrite(model_file, state=state)
    _assert_refused(model_file, "do not fit")


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
