"""HAM10000: issue 5's "plain skorch fine-tune" written without skinestimator's pipeline.

Issue 5 quotes about 0.75 held-out balanced accuracy after 3 epochs for a plain skorch fine-tune
of EfficientNet-Lite0 at 150x200 with class weights and flips, on its own 10 % lesion-grouped
split. ``ham10000.py --only plain_sgd_3_epochs`` runs that recipe through SkinLesionClassifier
on the tables' fold. This script runs it as a user would write it by hand: Pillow decodes every
file into one array, a torch Dataset flips, skorch's ``NeuralNetClassifier`` trains with its
defaults (SGD, lr 0.01) and a class-weighted loss. Only the weight-file conversion and the file
listing come from skinestimator. Same figures from both means the gap to 0.75 is the split,
not the pipeline.

    python benchmarks/ham10000_plain_skorch.py --seeds 0
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import timm
import torch
from _common import (
    DATA_DIR,
    RESULT_COLUMNS,
    command_line,
    machine_summary,
    markdown_table,
    run_isolated,
    score_run,
    write_section,
)
from ham10000 import grouped_split
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight
from skorch import NeuralNetClassifier
from skorch.dataset import Dataset

from skinestimator import load_ham10000
from skinestimator.networks import lite0_imagenet_state_dict

LABEL = "plain skorch NeuralNetClassifier (SGD lr 0.01, flips, class weights), 3 epochs"


def _decode(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]).transpose(0, 3, 1, 2)


class PlainSkorchFineTune:
    """The hand-written recipe behind a fit/predict_proba face, so that ``score_run`` scores it
    exactly like the SkinLesionClassifier rows (decoding counts as training time)."""

    def __init__(self, seed: int, max_epochs: int = 3):
        self.seed = seed
        self.max_epochs = max_epochs

    def fit(self, paths, labels):
        torch.manual_seed(self.seed)
        self.classes_, y = np.unique(labels, return_inverse=True)
        weights = compute_class_weight("balanced", classes=np.arange(len(self.classes_)), y=y)
        self.net_ = NeuralNetClassifier(
            Lite0, module__n_classes=len(self.classes_),
            criterion=torch.nn.CrossEntropyLoss,
            criterion__weight=torch.tensor(weights, dtype=torch.float32),
            max_epochs=self.max_epochs, lr=0.01, batch_size=32, train_split=None,
            iterator_train__shuffle=True, dataset=FlipDataset,
        )
        self.net_.fit(_decode(paths), y.astype(np.int64))
        self.history_ = [dict(row) for row in self.net_.history]
        return self

    def predict_proba(self, paths) -> np.ndarray:
        return self.net_.predict_proba(_decode(paths))


class Lite0(torch.nn.Module):
    """EfficientNet-Lite0 with ImageNet weights, taking uint8 batches."""

    def __init__(self, n_classes: int):
        super().__init__()
        body = timm.create_model("tf_efficientnet_lite0", num_classes=1000, drop_rate=0.2)
        body.load_state_dict(lite0_imagenet_state_dict())
        body.reset_classifier(n_classes)
        # channels_last: FIELD_NOTES' 2x CPU speed-up, which a careful user applies too.
        self.body = body.to(memory_format=torch.channels_last)

    def forward(self, x):
        x = (x.float() - 127.0) / 128.0  # the input scaling these weights were trained with
        return self.body(x.contiguous(memory_format=torch.channels_last))


class FlipDataset(Dataset):
    """skorch's Dataset with random flips on both axes when it has labels (training)."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        x = torch.as_tensor(x)
        if self.y is not None:
            if torch.rand(1) < 0.5:
                x = x.flip(-1)
            if torch.rand(1) < 0.5:
                x = x.flip(-2)
        return x, y


def run(seed: int, fold: int) -> dict:
    paths, labels, groups = load_ham10000(DATA_DIR / "ham10000")
    train, test = grouped_split(labels, groups, fold)
    assert not set(groups[train]) & set(groups[test])  # no lesion on both sides
    name = f"{LABEL}, {'' if fold == 1 else f'fold {fold}, '}seed {seed}"
    return score_run(name, PlainSkorchFineTune(seed), paths[train], labels[train],
                     paths[test], labels[test])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", type=int, nargs="+", default=[1], choices=range(1, 6))
    args = parser.parse_args()
    if not (DATA_DIR / "ham10000" / "HAM10000_metadata.csv").exists():
        sys.exit(f"HAM10000 not found under {DATA_DIR} (set SKINESTIMATOR_DATA)")
    print(f"HAM10000 plain skorch reference: {LABEL}; folds {args.folds}, seeds {args.seeds}")
    print(f"  machine: {machine_summary()}")
    rows = []
    for fold in args.folds:
        for seed in args.seeds:
            rows.append(run_isolated(run, seed, fold))
            print("   ", {k: rows[-1][k] for k in ("configuration", "balanced accuracy",
                                                     "macro AUC", "train time (s)")}, flush=True)
    table = markdown_table(rows, RESULT_COLUMNS)
    print()
    print(table)
    write_section("ham10000-plain-skorch", "\n".join([
        "## HAM10000, held-out lesions (plain skorch fine-tune, no skinestimator pipeline)", "",
        f"Command: `{command_line()}`", "",
        f"Machine: {machine_summary()}. Test fold(s) {', '.join(map(str, args.folds))} of "
        "`StratifiedGroupKFold(5, shuffle=True, random_state=0)` grouped by `lesion_id`, as in "
        "the other HAM10000 tables. Pillow decodes every file into one array (counted in the "
        "training time); skorch's `NeuralNetClassifier` with its defaults (SGD, lr 0.01, "
        "constant), a class-weighted loss, random flips on both axes, batch 32, no validation.",
        "", table,
    ]))


if __name__ == "__main__":
    main()
