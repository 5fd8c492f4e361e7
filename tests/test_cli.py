"""The ``skinestimator`` command line, run as a user would (real training on tiny images)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinestimator import make_synthetic_lesions, save_image_folder
from skinestimator.cli import main
from skinestimator.deploy import read_model_card

FAST = ["--backbone", "seed_cnn", "--image-size", "32", "--epochs", "2", "-q"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesions")
    X, y = make_synthetic_lesions(n_samples=48, image_size=(40, 40), n_classes=3,
                                  random_state=0)
    save_image_folder(X, y, root)
    return root


@pytest.fixture(scope="module")
def model(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.skin"
    assert main(["train", str(data_dir), "-o", str(path), *FAST]) == 0
    return path


def run(capsys, *argv):
    """Run the command in-process; return (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, expected_code, *words):
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


def test_train_writes_a_model_file_with_a_card(model, data_dir):
    card = read_model_card(model)
    assert card["backbone"] == "seed_cnn"
    assert card["preprocessing"]["image_size"] == [32, 32]
    # The card counts what the network trained on: 16 images per class less the 10 % (5
    # images, stratified) held out to score the epochs.
    data = card["training_data"]
    assert data["n_validation"] == 5 and data["n_images"] == 43
    assert sum(data["class_counts"].values()) == 43
    assert set(data["class_counts"]) == {"dark_round", "pale_square", "red_ring"}
    assert all(14 <= n <= 15 for n in data["class_counts"].values()), data  # 1-2 held out
    assert card["params"]["callbacks"] is None  # the progress bar is not part of the model
    assert len(card["history"]) == 2


def test_train_seed_holds_out_and_trains_as_the_python_api(model, data_dir, tmp_path, capsys):
    """``train --seed S`` is ``SkinLesionClassifier(random_state=S).fit`` with the same options:
    the same images held out, hence the same model."""
    from sklearn.base import clone

    from skinestimator import load_image_folder, load_model

    paths, labels = load_image_folder(data_dir)
    lesions = np.asarray([f"L{i // 2}" for i in range(len(paths))])  # two images per lesion
    metadata = tmp_path / "metadata.csv"
    with open(metadata, "w", newline="") as fh:
        csv.writer(fh).writerows([("lesion_id", "image_id"),
                                  *((g, Path(p).stem) for g, p in zip(lesions, paths))])
    grouped = tmp_path / "grouped.skin"
    code, _, err = run(capsys, "train", data_dir, "-o", grouped, "--metadata", metadata,
                       "--validation-fraction", "0.25", "--seed", "3", *FAST)
    assert code == 0, err

    for path, groups in ((model, None), (grouped, lesions)):
        cli_model = load_model(path)
        clf = clone(cli_model).fit(paths, labels, groups=groups)
        np.testing.assert_allclose(clf.predict_proba(paths), cli_model.predict_proba(paths),
                                   atol=1e-6)
        card = read_model_card(path)
        assert [round(h["valid_loss"], 6) for h in card["history"]] == [
            round(h["valid_loss"], 6) for h in clf.history_]
    assert load_model(grouped).get_params()["random_state"] == 3


def test_ctrl_c_during_train_exits_130_and_keeps_the_old_model(model, data_dir, tmp_path,
                                                              capsys, monkeypatch):
    import os
    import shutil
    import signal

    from skorch.callbacks import Callback

    from skinestimator.cli import _progress

    class CtrlCAtEpoch2(Callback):  # what a terminal's Ctrl+C sends, mid-training
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(_progress, "epoch_progress", lambda *a, **k: CtrlCAtEpoch2())
    target = tmp_path / "kept.skin"
    shutil.copy(model, target)
    before = target.read_bytes()
    code, out, err = run(capsys, "train", data_dir, "-o", target, "--backbone", "seed_cnn",
                         "--image-size", "32", "--epochs", "5", "--patience", "0")
    assert code == 130 and "interrupted" in err and "saved" not in out, (out, err)
    assert target.read_bytes() == before  # the previous model is not replaced
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_train_summary_names_the_score_of_the_model_it_saved(data_dir, tmp_path, capsys):
    path = tmp_path / "last.skin"
    code, out, err = run(capsys, "train", data_dir, "-o", path, "--backbone", "seed_cnn",
                         "--image-size", "32", "--epochs", "3", "--patience", "0")
    assert code == 0, err
    last = read_model_card(path)["history"][-1]["valid_bacc"]
    assert f"last epoch's validation balanced accuracy {last:.3f}" in out, out


def test_predict_formats(model, data_dir, capsys):
    images = sorted(str(p) for p in Path(data_dir).rglob("*.png"))
    code, out, _ = run(capsys, "predict", model, data_dir, "--format", "json", "--top-k", 2,
                       "-q")
    assert code == 0
    rows = json.loads(out)
    assert [r["image"] for r in rows] == images
    assert all(len(r["predictions"]) == 2 for r in rows)
    first = rows[0]["predictions"]
    assert first[0]["probability"] >= first[1]["probability"]

    code, out, _ = run(capsys, "predict", model, images[0], images[1], "--format", "csv", "-q")
    table = list(csv.DictReader(out.splitlines()))
    assert code == 0 and len(table) == 6 and table[0]["rank"] == "1"
    assert float(table[0]["probability"]) == pytest.approx(
        rows[0]["predictions"][0]["probability"], abs=1e-5)

    code, out, _ = run(capsys, "predict", model, images[0], "-q")
    assert code == 0 and images[0] in out and "%" in out


def test_explain_and_evaluate(model, data_dir, tmp_path, capsys):
    image = sorted(Path(data_dir).rglob("*.png"))[0]
    overlay = tmp_path / "overlay.png"
    code, out, _ = run(capsys, "explain", model, image, "-o", overlay, "-q")
    assert code == 0 and "Grad-CAM" in out
    assert Image.open(overlay).size == (384, 384)
    code, out, err = run(capsys, "explain", model, image, "-o", overlay, "--target", "mole")
    assert_one_line_error(code, err, 2, "mole", "dark_round")

    report = tmp_path / "report.html"
    metrics_file = tmp_path / "metrics.json"
    code, out, _ = run(capsys, "evaluate", model, data_dir, "--report", report, "--json",
                       metrics_file, "-q")
    assert code == 0 and "balanced accuracy" in out
    metrics = json.loads(metrics_file.read_text())
    assert metrics["n_images"] == 48 and 0 <= metrics["balanced_accuracy"] <= 1
    assert np.asarray(metrics["confusion_matrix"]).sum() == 48
    page = report.read_text()
    assert "Confusion matrix" in page and "not a diagnosis" in page and "seed_cnn" in page


def test_info(model, capsys):
    code, out, _ = run(capsys, "info", model)
    assert code == 0 and "no corruption found" in out and "dark_round" in out
    # The whole digest, to compare with the one the model's author publishes.
    assert f"sha256       {read_model_card(model)['sha256']}" in out.splitlines()
    trained_on = next(line for line in out.splitlines() if line.startswith("trained on"))
    assert trained_on.endswith("(and 5 images held out for validation)"), trained_on


def test_train_with_metadata_holds_out_whole_lesions(data_dir, tmp_path, capsys):
    images = sorted(Path(data_dir).rglob("*.png"))
    metadata = tmp_path / "meta.csv"
    with open(metadata, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["lesion_id", "image_id", "dx"])
        for i, path in enumerate(images):
            # Two images per lesion, as in HAM10000.
            writer.writerow([f"L{i // 2}", path.stem, path.parent.name])
    model_path = tmp_path / "grouped.skin"
    code, out, err = run(capsys, "train", data_dir, "-o", model_path, "--metadata", metadata,
                         "--validation-fraction", "0.25", *FAST)
    assert code == 0, err
    card = read_model_card(model_path)
    held_out = card["metrics"]["n_images"]
    assert card["training_data"]["n_images"] + held_out == len(images)
    assert card["training_data"]["n_validation"] == held_out
    assert held_out % 2 == 0, "whole lesions (pairs of images) are held out"
    assert "lesion_id" in card["metrics"]["split"]


def test_imbalance_options_reach_the_classifier(data_dir, tmp_path, capsys):
    model_path = tmp_path / "adjusted.skin"
    code, _, err = run(capsys, "train", data_dir, "-o", model_path, "--class-weight", "none",
                       "--logit-adjustment", "0.5", "--ema-decay", "0.9",
                       "--color-constancy", "6", *FAST)
    assert code == 0, err
    params = read_model_card(model_path)["params"]
    assert params["class_weight"] is None and params["logit_adjustment"] == 0.5
    assert params["ema_decay"] == 0.9 and params["color_constancy"] == 6
    for option, value in (("--logit-adjustment", "-1"), ("--ema-decay", "1"),
                          ("--color-constancy", "0.5"), ("--color-constancy", "inf")):
        code, _, err = run(capsys, "train", data_dir, "-o", model_path, option, value)
        assert code == 2 and option in err and "Traceback" not in err


def test_user_mistakes_are_one_clear_line(model, data_dir, tmp_path, capsys):
    code, _, err = run(capsys, "train", tmp_path / "nowhere", "-o", tmp_path / "m.skin")
    assert_one_line_error(code, err, 3, "not found", "nowhere")

    empty = tmp_path / "empty_class"
    (empty / "nevus").mkdir(parents=True)
    (empty / "melanoma").mkdir()
    Image.new("RGB", (8, 8)).save(empty / "nevus" / "a.png")
    code, _, err = run(capsys, "train", empty, "-o", tmp_path / "m.skin")
    assert_one_line_error(code, err, 3, "melanoma", "holds no images")

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff this is not really a jpeg")
    code, _, err = run(capsys, "predict", model, broken, "-q")
    assert_one_line_error(code, err, 3, "broken.jpg")

    code, _, err = run(capsys, "predict", model, tmp_path / "missing.jpg")
    assert_one_line_error(code, err, 3, "missing.jpg", "not found")

    wrong = tmp_path / "wrong.skin"
    wrong.write_text("this is a text file")
    code, _, err = run(capsys, "predict", model.parent / "nope.skin", broken)
    assert_one_line_error(code, err, 4, "not found")
    code, _, err = run(capsys, "evaluate", wrong, data_dir)
    assert_one_line_error(code, err, 4, "not a skinestimator model file")

    cut = tmp_path / "cut.skin"
    cut.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    code, _, err = run(capsys, "explain", cut, broken, "-o", tmp_path / "o.png")
    assert_one_line_error(code, err, 4, "truncated")

    # argparse's own errors too: one line and a pointer to --help, not the usage block.
    code, _, err = run(capsys, "train", data_dir, "-o", tmp_path / "m.skin", "--image-size",
                       "huge")
    assert_one_line_error(code, err, 2, "skinestimator train: error: argument --image-size",
                          "'huge'", "(see 'skinestimator train --help')")
    code, _, err = run(capsys, "train", data_dir)
    assert_one_line_error(code, err, 2, "-o/--output", "skinestimator train --help")
    code, _, err = run(capsys, "frobnicate")
    assert_one_line_error(code, err, 2, "skinestimator: error:", "frobnicate",
                          "skinestimator --help")

    metadata = tmp_path / "meta.csv"
    metadata.write_text("image,patient\nx,1\n")
    code, _, err = run(capsys, "train", data_dir, "-o", tmp_path / "m.skin", "--metadata",
                       metadata)
    assert_one_line_error(code, err, 3, "no column 'lesion_id'")


def test_serve_on_a_busy_port_is_one_clear_line(model, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run(capsys, "serve", model, "--port", port)
    assert_one_line_error(code, err, 2, f"127.0.0.1:{port}", "--port")


def test_serve_passes_its_limits_to_the_web_app(model, capsys, monkeypatch):
    import skinestimator.web

    received = {}
    # The server itself runs until Ctrl+C; tests/test_web.py drives the app it serves.
    monkeypatch.setattr(skinestimator.web, "serve", lambda clf, **kw: received.update(kw))
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, _, _ = run(capsys, "serve", model, "--port", port, "--max-megapixels", "2.5",
                     "--max-upload-mb", "1")
    assert code == 0
    assert received["max_image_pixels"] == 2_500_000
    # Decimal megabytes, as the page shows them (--max-megapixels is decimal too).
    assert received["max_upload_bytes"] == 1_000_000
    code, _, _ = run(capsys, "serve", model, "--port", port, "--max-upload-mb", "0.001")
    assert code == 0 and received["max_upload_bytes"] == 1000
    code, out, _ = run(capsys, "serve", "--help")
    assert code == 0 and "1 MB = 1,000,000 bytes" in " ".join(out.split())


def test_unreadable_image_while_training(tmp_path, capsys):
    root = tmp_path / "data"
    X, y = make_synthetic_lesions(n_samples=8, image_size=(16, 16), n_classes=2,
                                  random_state=0)
    save_image_folder(X, y, root)
    bad = next(root.rglob("*.png"))
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, _, err = run(capsys, "train", root, "-o", tmp_path / "m.skin", *FAST,
                       "--validation-fraction", "0")
    assert_one_line_error(code, err, 3, bad.name)


def test_progress_bars_on_a_terminal(data_dir, tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = [a for a in FAST if a != "-q"]
    assert main(["train", str(data_dir), "-o", str(tmp_path / "m.skin"), *argv]) == 0
    assert main(["predict", str(tmp_path / "m.skin"), str(data_dir), "-o",
                 str(tmp_path / "p.csv")]) == 0
    shown = terminal.getvalue()
    assert "training: 100%" in shown and "2/2" in shown and "epoch" in shown
    assert "predicting: 100%" in shown and "48/48" in shown


def test_help_for_every_command(capsys):
    for command in ("train", "evaluate", "predict", "explain", "serve", "export", "info",
                    "demo"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and f"usage: skinestimator {command}" in out
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "Exit codes" in out


def test_export_onnx(model, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    code, out, _ = run(capsys, "export", model, "-o", tmp_path / "model.onnx")
    assert code == 0 and (tmp_path / "model.onnx").stat().st_size > 1000


def test_demo_runs_end_to_end(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "-o", out_dir, "--n-samples", 60, "--epochs", 2,
                         "--image-size", 32, "-q")
    assert code == 0, err
    assert "demo finished" in out
    assert (out_dir / "demo-model.skin").exists() and (out_dir / "demo-overlay.png").exists()
    assert "balanced accuracy" in (out_dir / "demo-report.html").read_text()


def test_console_script_exit_code_and_message(tmp_path):
    """The installed entry point: a real process, a real exit status, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "skinestimator.cli", "predict", str(tmp_path / "none.skin"),
         str(tmp_path)], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 4
    assert result.stderr.strip() == (
        f"skinestimator predict: error: {tmp_path / 'none.skin'}: model file not found"
    )


@pytest.mark.realdata
def test_real_ham10000_grouped_training_and_evaluation(tmp_path, capsys):
    """Real dermoscopy JPEGs: whole lesions are held out and the commands run end to end."""
    from skinestimator.cli._main import _grouped_holdout
    from tests.conftest import require_ham10000

    ham = require_ham10000()
    with open(ham / "HAM10000_metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = np.asarray([r["dx"] for r in rows])
    groups = np.asarray([r["lesion_id"] for r in rows])
    train, valid = _grouped_holdout(labels, groups, 0.1, seed=0)
    assert not set(groups[train]) & set(groups[valid])
    assert 0.07 < len(valid) / len(rows) < 0.13
    assert set(labels[valid]) == set(labels), "stratified: every class is validated"

    # A small class-per-folder tree of real images (links, never copies of the data).
    data = tmp_path / "ham_subset"
    chosen = [r for dx in ("bkl", "mel", "nv") for r in
              sorted((r for r in rows if r["dx"] == dx), key=lambda r: r["lesion_id"])[:30]]
    for r in chosen:
        (data / r["dx"]).mkdir(parents=True, exist_ok=True)
        (data / r["dx"] / f"{r['image_id']}.jpg").symlink_to(
            ham / "images" / r["dx"] / f"{r['image_id']}.jpg")
    metadata = tmp_path / "metadata.csv"
    with open(metadata, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    model_path = tmp_path / "ham.skin"
    code, _, err = run(capsys, "train", data, "-o", model_path, "--metadata", metadata,
                       "--validation-fraction", "0.2", *FAST)
    assert code == 0, err
    card = read_model_card(model_path)
    assert card["training_data"]["n_images"] + card["metrics"]["n_images"] == 90
    code, out, err = run(capsys, "evaluate", model_path, data, "-q")
    assert code == 0 and "mel" in out, err


# ----------------------------------------------------------------------------------------------
# output files: never onto an input, never over a file of another kind, folders made up front


@pytest.fixture
def no_training(monkeypatch):
    """Make any training attempt fail the test: the checks must come before the work."""
    from skinestimator import SkinLesionClassifier

    def fit(self, *args, **kwargs):
        pytest.fail("training started although the command line was refused")

    monkeypatch.setattr(SkinLesionClassifier, "fit", fit)


def test_outputs_never_overwrite_an_input(model, data_dir, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    photo.write_bytes(sorted(Path(data_dir).rglob("*.png"))[0].read_bytes())
    model_copy = tmp_path / "m2.skin"
    model_copy.write_bytes(model.read_bytes())
    kept = {photo: photo.read_bytes(), model_copy: model_copy.read_bytes()}

    code, _, err = run(capsys, "explain", model_copy, photo, "-o", photo, "-q")
    assert_one_line_error(code, err, 2, "-o/--output", str(photo), "input image")
    code, _, err = run(capsys, "predict", model_copy, photo, "-o", model_copy, "-q")
    assert_one_line_error(code, err, 2, "-o/--output", str(model_copy), "model file")
    code, _, err = run(capsys, "predict", model_copy, tmp_path, "-o", photo, "-q")
    assert_one_line_error(code, err, 2, str(photo), "input image")
    code, _, err = run(capsys, "export", model_copy, "-o", model_copy)
    assert_one_line_error(code, err, 2, str(model_copy), "model file")
    # Another model file is not replaced by predictions either.
    code, _, err = run(capsys, "predict", model, photo, "-o", model_copy, "-q")
    assert_one_line_error(code, err, 2, str(model_copy), "is a skinestimator model file")

    tree = tmp_path / "tree"
    (tree / "dark_round").mkdir(parents=True)
    for source in sorted(Path(data_dir).rglob("*.png"))[::8]:
        (tree / source.parent.name).mkdir(exist_ok=True)
        (tree / source.parent.name / source.name).write_bytes(source.read_bytes())
    image = sorted(tree.rglob("*.png"))[0]
    kept[image] = image.read_bytes()
    for option in ("--report", "--json"):
        code, _, err = run(capsys, "evaluate", model_copy, tree, option, image, "-q")
        assert_one_line_error(code, err, 2, option, str(image), "input image")
    code, _, err = run(capsys, "evaluate", model_copy, tree, "--json", model_copy, "-q")
    assert_one_line_error(code, err, 2, "--json", "model file")
    code, _, err = run(capsys, "evaluate", model_copy, tree, "--json", tmp_path / "r.x",
                       "--report", tmp_path / "r.x", "-q")
    assert_one_line_error(code, err, 2, "--report and --json", "same file")
    for path, content in kept.items():
        assert path.read_bytes() == content, f"{path} was overwritten"


def test_train_replaces_only_a_model_file(model, data_dir, tmp_path, capsys, no_training):
    existing = tmp_path / "existing.txt"
    existing.write_text("my notes\n")
    code, _, err = run(capsys, "train", data_dir, "-o", existing, *FAST)
    assert_one_line_error(code, err, 2, str(existing), "not a skinestimator model file",
                          "refusing to replace")
    assert existing.read_text() == "my notes\n"

    image = sorted(Path(data_dir).rglob("*.png"))[0]
    before = image.read_bytes()
    code, _, err = run(capsys, "train", data_dir, "-o", image, *FAST)
    assert_one_line_error(code, err, 2, str(image), "input image")
    assert image.read_bytes() == before

    metadata = tmp_path / "meta.csv"
    with open(metadata, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["lesion_id", "image_id"])
        writer.writerows([p.stem, p.stem] for p in Path(data_dir).rglob("*.png"))
    code, _, err = run(capsys, "train", data_dir, "-o", metadata, "--metadata", metadata,
                       *FAST)
    assert_one_line_error(code, err, 2, str(metadata), "metadata file")


def test_train_replaces_an_existing_model_file(model, data_dir, tmp_path, capsys):
    target = tmp_path / "again.skin"
    target.write_bytes(model.read_bytes())
    code, _, err = run(capsys, "train", data_dir, "-o", target, *FAST, "--notes", "second run",
                       "--validation-fraction", "0")
    assert code == 0, err
    assert read_model_card(target)["notes"] == "second run"


def test_unwritable_train_output_fails_before_training(data_dir, tmp_path, capsys,
                                                       no_training):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run(capsys, "train", data_dir, "-o", blocker / "sub" / "m.skin", *FAST)
    assert_one_line_error(code, err, 2, str(blocker / "sub" / "m.skin"), "is a file, not a folder")
    assert not (blocker.parent / "sub").exists()


def test_every_output_option_creates_its_folders(model, data_dir, tmp_path, capsys):
    image = sorted(Path(data_dir).rglob("*.png"))[0]
    csv_file = tmp_path / "new" / "deeper" / "p.csv"
    code, _, err = run(capsys, "predict", model, image, "--format", "csv", "-o", csv_file, "-q")
    assert code == 0, err
    assert csv_file.read_text().startswith("image,rank,label,probability")
    json_file = tmp_path / "other" / "metrics.json"
    report = tmp_path / "third" / "report.html"
    code, _, err = run(capsys, "evaluate", model, data_dir, "--json", json_file, "--report",
                       report, "-q")
    assert code == 0, err
    assert json.loads(json_file.read_text())["n_images"] == 48 and report.exists()
    overlay = tmp_path / "fourth" / "overlay.png"
    code, _, err = run(capsys, "explain", model, image, "-o", overlay, "--alpha", "1", "-q")
    assert code == 0, err
    assert overlay.exists()


def test_option_values_are_checked_when_parsing(model, tmp_path, capsys):
    from skinestimator.cli import build_parser

    # A real model for the ports that once reached the socket (OverflowError); a missing one
    # for the others, so that a regression fails instead of serving.
    for model_file, port in ((model, "99999"), (model, "-1"), (tmp_path / "none.skin", "0"),
                             (tmp_path / "none.skin", "http")):
        code, _, err = run(capsys, "serve", model_file, "--port", port)
        assert code == 2 and "--port" in err and "1 to 65535" in err, err
        assert "Traceback" not in err and "internal error" not in err
    for device in ("tpu", "cuda:banana", "gpu0"):
        code, _, err = run(capsys, "train", tmp_path, "-o", tmp_path / "m.skin", "--device",
                           device)
        assert code == 2 and "--device" in err and repr(device) in err, err
    import torch

    if not torch.cuda.is_available():  # a device torch knows but this computer lacks
        code, _, err = run(capsys, "train", tmp_path, "-o", tmp_path / "m.skin", "--device",
                           "cuda:1")
        assert code == 2 and "--device" in err and "no CUDA GPU" in err, err
    # Backends torch names but this build lacks, and 'meta' (no data): refused while parsing,
    # before the data folder (missing here, which would be exit 3) is even looked at.
    from skinestimator._runtime import resolve_device

    for device in ("xla", "meta"):
        try:
            resolve_device(device)
            continue  # a computer with torch_xla installed has this device
        except ValueError:
            pass
        code, _, err = run(capsys, "train", tmp_path / "missing", "-o", tmp_path / "m.skin",
                           "--device", device)
        assert_one_line_error(code, err, 2, "--device", repr(device), "use 'auto' or 'cpu'")
        assert "internal error" not in err
    parser = build_parser()
    for device in ("auto", "cpu", "cpu:0"):
        args = parser.parse_args(["train", "d", "-o", "m.skin", "--device", device])
        assert args.device == device
    assert parser.parse_args(["serve", "m.skin", "--port", "65535"]).port == 65535
    for alpha in ("0", "1", "0.5"):
        args = parser.parse_args(["explain", "m.skin", "i.png", "-o", "o.png", "--alpha", alpha])
        assert args.alpha == float(alpha)
    for alpha in ("1.5", "-0.1", "nan"):
        code, _, err = run(capsys, "explain", "m.skin", "i.png", "-o", "o.png", "--alpha", alpha)
        assert code == 2 and "--alpha" in err and "[0, 1]" in err, err


def test_demo_mistakes_are_one_clear_line(tmp_path, capsys, no_training):
    existing = tmp_path / "existing_file"
    existing.write_text("keep me")
    code, _, err = run(capsys, "demo", "-o", existing, "-q")
    assert_one_line_error(code, err, 2, "-o/--output-dir", str(existing), "not a folder")
    assert existing.read_text() == "keep me"
    code, _, err = run(capsys, "demo", "-o", tmp_path / "d", "--n-samples", 3, "-q")
    assert_one_line_error(code, err, 2, "--n-samples 3", "4 classes", "at least 20")
    code, _, err = run(capsys, "demo", "-o", tmp_path / "d", "--n-samples", 9,
                       "--n-classes", 2, "-q")
    assert_one_line_error(code, err, 2, "--n-samples 9", "at least 10")


def test_help_states_each_default_once():
    import argparse

    from skinestimator.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.dest} has no help text"
            text = formatter._expand_help(action)
            assert text.count("default:") <= 1, f"{name} {action.dest}: {text}"
            assert "(default: None)" not in text and "(default: False)" not in text, text
        page = sub.format_help()
        assert "(default: None)" not in page
    train = commands.choices["train"]
    page = " ".join(train.format_help().split())
    assert "(default: the images' own size, shorter side at most 224)" in page
    assert "(default: 15)" in page  # plain defaults are still shown
    demo = " ".join(commands.choices["demo"].format_help().split())
    assert "under a minute" in demo
    docs = Path(__file__).resolve().parents[1] / "docs" / "command_line.md"
    if docs.exists():
        assert "under a minute" in " ".join(docs.read_text().split())


# ----------------------------------------------------------------------------------------------
# findings of a new-user review


def _tiny_folder(root: Path, n_per_class: int = 6, n_classes: int = 3) -> list[Path]:
    X, y = make_synthetic_lesions(n_samples=n_per_class * n_classes, image_size=(16, 16),
                                  n_classes=n_classes, random_state=0)
    save_image_folder(X, y, root)
    return sorted(root.rglob("*.png"))


def test_too_few_images_for_a_grouped_hold_out_is_a_data_error(tmp_path, capsys, no_training):
    from skinestimator.cli._main import _grouped_holdout

    images = _tiny_folder(tmp_path / "small")  # 3 classes x 6 images, one lesion per image
    metadata = tmp_path / "small_meta.csv"
    with open(metadata, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["lesion_id", "image_id"])
        writer.writerows([f"L{i}", p.stem] for i, p in enumerate(images))
    code, _, err = run(capsys, "train", tmp_path / "small", "-o", tmp_path / "small.skin",
                       "--metadata", metadata, "--backbone", "seed_cnn", "--epochs", 1)
    # 10 % takes 10 stratified group folds, more than the 6 images of any class.
    assert_one_line_error(code, err, 3, "cannot hold out 10% of the 'lesion_id' groups",
                          "largest class has 6 images", "--validation-fraction 0.2",
                          "--validation-fraction 0")
    assert "internal error" not in err
    # The suggested share does work on these data.
    labels = np.asarray([p.parent.name for p in images])
    groups = np.asarray([f"L{i}" for i in range(len(images))])
    train, valid = _grouped_holdout(labels, groups, 0.2, seed=0)
    assert len(train) + len(valid) == len(images) and len(valid) > 0

    # Too few groups: the advice is a larger share (one that passes this check too) or none.
    with open(metadata, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["lesion_id", "image_id"])
        writer.writerows([f"L{i % 4}", p.stem] for i, p in enumerate(images))
    code, _, err = run(capsys, "train", tmp_path / "small", "-o", tmp_path / "small.skin",
                       "--metadata", metadata)
    assert_one_line_error(code, err, 3, "only 4 'lesion_id' groups", "--validation-fraction 0.25",
                          "--validation-fraction 0 to train without validation")


def test_outputs_replace_only_files_of_their_own_kind(model, data_dir, tmp_path, capsys):
    image = sorted(Path(data_dir).rglob("*.png"))[0]
    victim_png = tmp_path / "victim.png"
    victim_png.write_bytes(image.read_bytes())
    victim_csv = tmp_path / "victim_meta.csv"
    victim_csv.write_text("image_id,lesion_id\nx,1\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    kept = {path: path.read_bytes() for path in (victim_png, victim_csv, notes)}

    code, _, err = run(capsys, "predict", model, image, "-o", victim_png, "-q")
    assert_one_line_error(code, err, 2, f"-o/--output '{victim_png}'", "existing image (.png)",
                          "refusing to replace it with the predictions")
    for option in ("--json", "--report"):
        code, _, err = run(capsys, "evaluate", model, data_dir, option, victim_csv, "-q")
        assert_one_line_error(code, err, 2, f"{option} '{victim_csv}'", "existing .csv file")
    code, _, err = run(capsys, "explain", model, image, "-o", notes, "-q")
    assert_one_line_error(code, err, 2, str(notes), "existing .txt file", "the overlay")
    code, _, err = run(capsys, "export", model, "-o", notes)
    assert_one_line_error(code, err, 2, str(notes), "existing .txt file", "the ONNX file")
    for path, content in kept.items():
        assert path.read_bytes() == content, f"{path} was overwritten"

    # Nor a new file named like an image or a model: it would later pass for one.
    for args in (("predict", model, image, "-o", tmp_path / "new.png"),
                 ("evaluate", model, data_dir, "--report", tmp_path / "new.skin"),
                 ("train", data_dir, "--backbone", "seed_cnn", "-o", tmp_path / "model.png")):
        code, _, err = run(capsys, *args, "-q")
        assert_one_line_error(code, err, 2, "refusing to write", "under the name of")
        assert not Path(args[-1]).exists()

    # An earlier output of the same kind is replaced, as before.
    earlier = {"predictions.json": "[]", "metrics.json": "{}", "report.html": "<p>old</p>"}
    for name, text in earlier.items():
        (tmp_path / name).write_text(text)
    code, _, err = run(capsys, "predict", model, image, "--format", "json", "-o",
                       tmp_path / "predictions.json", "-q")
    assert code == 0, err
    assert json.loads((tmp_path / "predictions.json").read_text())[0]["image"] == str(image)
    code, _, err = run(capsys, "evaluate", model, data_dir, "--json", tmp_path / "metrics.json",
                       "--report", tmp_path / "report.html", "-q")
    assert code == 0, err
    assert json.loads((tmp_path / "metrics.json").read_text())["n_images"] == 48
    assert "Confusion matrix" in (tmp_path / "report.html").read_text()
    code, _, err = run(capsys, "explain", model, image, "-o", victim_png, "-q")
    assert code == 0, err  # an image is replaced by an overlay image
    assert victim_png.read_bytes() != kept[victim_png]


def test_metric_warnings_stay_out_and_one_class_gets_one_note(model, data_dir, tmp_path,
                                                               capsys):
    import warnings

    one_class = tmp_path / "sub1"
    (one_class / "dark_round").mkdir(parents=True)
    for source in sorted((Path(data_dir) / "dark_round").glob("*.png"))[:4]:
        (one_class / "dark_round" / source.name).write_bytes(source.read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run(capsys, "evaluate", model, one_class, "-q")
    assert code == 0 and "balanced accuracy" in out, err
    assert not [str(w.message) for w in caught if "sklearn" in w.filename], caught
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"note: '{one_class}': all images are of "
                                                   "one class (dark_round)"), err

    # The held-out part of `train --metadata` may miss a class the network predicts.
    from skinestimator.cli._report import coverage_note, evaluation_metrics

    classes = np.asarray(["a", "b", "c"])
    proba = np.asarray([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.2, 0.1, 0.7]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluation_metrics(np.asarray(["a", "b", "b"]), proba, classes)
    assert not caught, [str(w.message) for w in caught]
    assert coverage_note(metrics) == ("no images of c: balanced accuracy and macro ROC AUC "
                                      "cover the 2 classes present")
    assert coverage_note(evaluation_metrics(np.asarray(["a", "b", "c"]), proba, classes)) is None


def test_patience_zero_turns_early_stopping_off(tmp_path, capsys):
    _tiny_folder(tmp_path / "data", n_per_class=4, n_classes=2)
    model_path = tmp_path / "m.skin"
    code, _, err = run(capsys, "train", tmp_path / "data", "-o", model_path, "--backbone",
                       "seed_cnn", "--epochs", 1, "--patience", 0, "-q")
    assert code == 0, err
    assert read_model_card(model_path)["params"]["patience"] is None
    code, _, err = run(capsys, "train", tmp_path / "data", "-o", model_path, "--patience", -1)
    assert_one_line_error(code, err, 2, "--patience", "expected an integer >= 0")


def test_docs_name_every_option():
    import argparse

    from skinestimator.cli import build_parser

    docs = Path(__file__).resolve().parents[1] / "docs" / "command_line.md"
    if not docs.exists():
        pytest.skip("docs are not installed with the package")
    text = docs.read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(action.option_strings)}"
               for name, sub in commands.choices.items() for action in sub._actions
               if action.option_strings and action.dest not in ("help", "quiet", "debug")
               and not any(re.search(re.escape(option) + r"(?![\w-])", text)
                           for option in action.option_strings)]
    assert not missing, f"docs/command_line.md does not mention {missing}"
    assert "`--patience 0`" in text
