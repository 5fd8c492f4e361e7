"""How much a leaky split inflates a score: the same model on HAM10000 scored on a random split
of the images and on a split that keeps each lesion on one side.

HAM10000 holds several images of many lesions; a random split puts images of one lesion on
both sides, so the test part partly repeats the training part. EfficientNet-Lite0 (ImageNet
weights) with a linear head on its cached features (``finetune="head"``, fast on a CPU), 4,000
images, 80 / 20 splits, three seeds each. Usage::

    python benchmarks/leaky_split.py            # about 5 minutes on 2 CPU cores
    python benchmarks/leaky_split.py --quick    # a smoke run, does not touch the docs
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _common import DATA_DIR, command_line, machine_summary, markdown_table, write_section
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit

from skinestimator import SkinLesionClassifier, keep_freed_memory, load_ham10000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()
    paths, labels, groups = load_ham10000(DATA_DIR / "ham10000")
    n_images, seeds = (600, (0,)) if args.quick else (4000, (0, 1, 2))
    # Whole lesions drawn at random, so that the subset keeps HAM10000's repeated images.
    lesions = np.random.default_rng(0).permutation(np.unique(groups))
    keep = np.flatnonzero(np.isin(groups, lesions[: int(len(lesions) * n_images
                                                       / len(paths) * 1.05)]))[:n_images]
    paths, labels, groups = paths[keep], labels[keep], groups[keep]
    rows = []
    for seed in seeds:
        for name, splitter in (("random split of the images", ShuffleSplit),
                               ("lesion-grouped split", GroupShuffleSplit)):
            train, test = next(splitter(n_splits=1, test_size=0.2, random_state=seed)
                               .split(paths, labels, groups))
            shared = np.isin(groups[test], groups[train]).mean()
            clf = SkinLesionClassifier(finetune="head", augment=False, image_size=(150, 200),
                                       max_epochs=30, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                clf.fit(paths[train], labels[train], groups=groups[train])
            predicted = clf.predict(paths[test])
            rows.append({"split": name, "seed": seed,
                         "test images of a lesion also in training": float(shared),
                         "accuracy": accuracy_score(labels[test], predicted),
                         "balanced accuracy": balanced_accuracy_score(labels[test], predicted)})
            print(rows[-1], flush=True)
    means = []
    for name in dict.fromkeys(row["split"] for row in rows):
        mine = [row for row in rows if row["split"] == name]
        means.append({"split": name, **{key: float(np.mean([row[key] for row in mine]))
                                        for key in ("test images of a lesion also in training",
                                                    "accuracy", "balanced accuracy")}})
    body = "\n".join([
        f"`{command_line()}` — {machine_summary()}; HAM10000, {n_images} images of whole "
        f"lesions, EfficientNet-Lite0 with a linear head on cached features, 80 / 20 splits, "
        f"mean of {len(seeds)} seeds:", "",
        markdown_table(means, ["split", "test images of a lesion also in training", "accuracy",
                               "balanced accuracy"]), "",
        markdown_table(rows, ["split", "seed", "test images of a lesion also in training",
                              "accuracy", "balanced accuracy"]),
    ])
    print(body)
    if not args.quick:
        write_section("leaky-split", body)


if __name__ == "__main__":
    main()
