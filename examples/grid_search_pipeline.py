"""
Grid search over a pipeline
===========================

Grid search over a pipeline: image size of the loader and learning rate of the network.

``SkinLesionClassifier`` is an ordinary scikit-learn estimator, so ``GridSearchCV`` tunes a
``Pipeline`` of ``ImageLoader`` (files → arrays) and the classifier with the usual
``step__param`` names, in parallel (``n_jobs=2``), with lesion-grouped folds (``groups``), and
refits the best setting on all training images. A held-out set of lesions gives the final score.

The images are synthetic lesions written to a temporary folder, as a class-per-folder tree like
your own data would be; it runs in about a minute on 2 CPU cores.

Run::

    python examples/grid_search_pipeline.py
"""

import tempfile
import time

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, classification_report
from sklearn.model_selection import GridSearchCV, GroupShuffleSplit, StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from skinestimator import (
    ImageLoader,
    SkinLesionClassifier,
    load_image_folder,
    make_synthetic_lesions,
    save_image_folder,
)


def main():
    with tempfile.TemporaryDirectory(prefix="lesions-") as root:
        run(root)


def run(root):
    X, y = make_synthetic_lesions(n_samples=240, image_size=(64, 64), n_classes=3, random_state=0)
    save_image_folder(X, y, root)
    paths, labels = load_image_folder(root)
    # Pretend every lesion was photographed twice, as often in HAM10000.
    lesion_ids = np.arange(len(paths)) // 2
    print(f"{len(paths)} image files of {len(set(lesion_ids))} lesions in {root}")

    train, test = next(
        GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0).split(
            paths, labels, lesion_ids
        )
    )
    pipe = Pipeline(
        [
            ("load", ImageLoader(size=(32, 32))),
            # image_size=None: the network trains at whatever size the loader produces.
            (
                "clf",
                SkinLesionClassifier(
                    backbone="seed_cnn", max_epochs=6, batch_size=16, patience=3, random_state=0
                ),
            ),
        ]
    )
    grid = {"load__size": [(24, 24), (40, 40)], "clf__lr": [3e-4, 3e-3]}
    search = GridSearchCV(
        pipe,
        grid,
        cv=StratifiedGroupKFold(n_splits=3),
        scoring="balanced_accuracy",
        n_jobs=2,
        refit=True,
    )
    start = time.perf_counter()
    search.fit(paths[train], labels[train], groups=lesion_ids[train])
    print(
        f"Grid search: {len(search.cv_results_['params'])} settings x 3 folds "
        f"in {time.perf_counter() - start:.0f} s\n"
    )

    columns = [
        "param_load__size",
        "param_clf__lr",
        "mean_test_score",
        "std_test_score",
        "mean_fit_time",
        "rank_test_score",
    ]
    table = pd.DataFrame(search.cv_results_)[columns].sort_values("rank_test_score")
    print(
        table.to_string(
            index=False, float_format="%.3f", formatters={"param_clf__lr": "{:.0e}".format}
        )
    )
    print(f"\nBest: {search.best_params_} (CV balanced accuracy {search.best_score_:.3f})")

    y_pred = search.predict(paths[test])
    print(
        f"Held-out lesions: balanced accuracy {balanced_accuracy_score(labels[test], y_pred):.3f}\n"
    )
    print(classification_report(labels[test], y_pred, digits=3))

    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6, 3.5))
    names = [f"{size[0]} px, lr {lr:.0e}" for size, lr in
             zip(table["param_load__size"], table["param_clf__lr"], strict=True)]
    ax.barh(names, table["mean_test_score"], xerr=table["std_test_score"], color="#4477aa")
    ax.set_xlabel("CV balanced accuracy (lesion-grouped folds)")
    ax.set_title("GridSearchCV over a pipeline")
    plt.tight_layout()


if __name__ == "__main__":
    main()
