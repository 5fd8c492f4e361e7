"""
Optuna search with pruning and a resumed study
==============================================

Optuna search with per-epoch pruning and a persistent SQLite study that is resumed.

``OptunaLesionSearchCV`` samples the classifier's hyperparameters (learning rate, weight decay,
batch size, augmentation strength, image size; with a pretrained backbone also how much of it
trains) with Optuna's TPE sampler. While a trial trains, its per-epoch validation balanced
accuracy goes to a median pruner, which stops trials that fall behind earlier ones at the same
fold and epoch.

The study lives in a SQLite file: the second ``fit`` below, a new search object as a second
process or machine would create, resumes it and ends with the trials of both. Both use the
same ``random_state``: the resumed search seeds its sampler from it and the number of trials
already in the study, so it draws new parameters rather than repeating the first run's. Pass
``--storage sqlite:///lesions.db`` (or a PostgreSQL URL shared by several machines) to keep
the study between runs; run the script again and it continues where it stopped.

The images are small synthetic lesions; it runs in a few minutes on 2 CPU cores.

Run::

    python examples/optuna_pruning_sqlite.py
"""

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution
from sklearn.model_selection import train_test_split

from skinestimator import SkinLesionClassifier, keep_freed_memory, make_synthetic_lesions
from skinestimator.model_selection import OptunaLesionSearchCV, default_search_space


def main():
    parser = argparse.ArgumentParser(description="Optuna search with pruning and a resumed study.")
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL or SQLite file (default: a temporary file)",
    )
    parser.add_argument("--trials", type=int, default=5, help="trials per fit")
    args = parser.parse_args()
    # This script is its own process, so it may trade ~8 % more memory for ~2x CPU speed.
    keep_freed_memory()
    with tempfile.TemporaryDirectory() as tmp:
        storage = args.storage or str(Path(tmp) / "lesions.db")
        run(storage, args.trials)


def run(storage, n_trials):
    X, y = make_synthetic_lesions(n_samples=240, image_size=(32, 32), n_classes=3, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    clf = SkinLesionClassifier(
        backbone="seed_cnn",
        image_size=(32, 32),
        max_epochs=5,
        validation_fraction=0.2,
        patience=None,
        random_state=0,
    )

    # The default space, with one entry overridden and one added.
    space = default_search_space(clf)
    space["batch_size"] = CategoricalDistribution([16, 32])
    space["max_epochs"] = CategoricalDistribution([3, 5])
    print("Search space:")
    for name, distribution in space.items():
        print(f"  {name}: {distribution}")

    def search():
        return OptunaLesionSearchCV(
            clf,
            space,
            n_trials=n_trials,
            cv=2,
            storage=storage,
            study_name="synthetic-lesions",
            pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
            verbose=1,  # a progress bar over trials
            random_state=0,
        )

    print(f"\nStudy storage: {storage}")
    start = time.perf_counter()
    first = search().fit(X_train, y_train)
    print(
        f"First fit: {len(first.study_.trials)} trials in the study "
        f"({time.perf_counter() - start:.0f} s)"
    )

    # A new search object on the same storage, as a second process would create, resumes it
    # (same random_state, same cv and scoring: a study run with other ones is refused).
    start = time.perf_counter()
    second = search().fit(X_train, y_train)
    print(
        f"Second fit (resumed): {len(second.study_.trials)} trials in the study "
        f"({time.perf_counter() - start:.0f} s)\n"
    )

    results = pd.DataFrame(second.cv_results_)
    columns = [
        "number",
        "state",
        "mean_test_score",
        "param_lr",
        "param_batch_size",
        "param_image_size",
        "duration",
    ]
    print(results[columns].to_string(index=False, float_format="{:.3g}".format))
    print(f"\nTrial states: {results['state'].value_counts().to_dict()}")
    print(f"Best trial {second.best_trial_.number}: CV balanced accuracy {second.best_score_:.3f}")
    print(f"Best parameters: {second.best_params_}")
    print(f"Held-out balanced accuracy of the refit best model: {second.score(X_test, y_test):.3f}")

    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6, 3.5))
    for state, rows in results.groupby("state"):
        ax.scatter(rows["number"], rows["mean_test_score"].fillna(0), label=state)
    ax.set_xlabel("trial")
    ax.set_ylabel("CV balanced accuracy (pruned: 0)")
    ax.set_title("Optuna study, resumed by a second search")
    ax.legend()
    plt.tight_layout()


if __name__ == "__main__":
    main()
