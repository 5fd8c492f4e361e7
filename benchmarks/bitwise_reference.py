"""Bit-identical predictions across a refactor: save them before, compare after.

Fits ``SkinLesionClassifier(random_state=0)`` in a dozen configurations on a fixed synthetic set
(arrays and PNG files, every training path the estimator has: plain, early stopping, moving
average, logit adjustment, cached head features, ``partial_fit``, ``warm_start``, test-time
flips) and records every ``predict_proba``.

    python benchmarks/bitwise_reference.py --save before.npz    # on the old code
    python benchmarks/bitwise_reference.py --compare before.npz # on the new code

``--compare`` prints each configuration's largest difference and exits 1 unless all are 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

from skinestimator import SkinLesionClassifier, make_synthetic_lesions, save_image_folder

BASE = dict(backbone="seed_cnn", max_epochs=3, batch_size=16, augment=False,
            validation_fraction=None, num_workers=0, random_state=0)
LITE0 = dict(BASE, backbone="efficientnet_lite0", max_epochs=2)

CONFIGS = {
    "seed_cnn": {},
    "seed_cnn_augment": dict(augment=True),
    "seed_cnn_validation_early_stopping": dict(validation_fraction=0.2, patience=1,
                                               max_epochs=5),
    "seed_cnn_ema": dict(ema_decay=0.9),
    "seed_cnn_logit_adjustment": dict(class_weight=None, logit_adjustment=1.0),
    "seed_cnn_constant_lr_sgd": dict(lr_schedule="constant", optimizer="sgd", lr=0.05),
    "seed_cnn_tta": dict(tta=True),
    "seed_cnn_color_constancy": dict(color_constancy=6),
    "lite0_finetune": dict(LITE0, augment=True, ema_decay=0.95),
    "lite0_head_cached_features": dict(LITE0, finetune="head", validation_fraction=0.2),
}


def run() -> dict[str, np.ndarray]:
    X, y = make_synthetic_lesions(n_samples=96, image_size=(32, 32), random_state=0)
    X_test, _ = make_synthetic_lesions(n_samples=24, image_size=(32, 32), random_state=1)
    groups = np.arange(len(y)) // 2
    results = {}
    for name, params in CONFIGS.items():
        params = {**BASE, **params}
        started = time.perf_counter()
        clf = SkinLesionClassifier(**params).fit(X, y)
        results[name] = clf.predict_proba(X_test)
        print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)
    grouped = SkinLesionClassifier(**dict(BASE, validation_fraction=0.25, patience=2))
    results["seed_cnn_grouped"] = grouped.fit(X, y, groups=groups).predict_proba(X_test)
    own_validation = SkinLesionClassifier(**dict(BASE, patience=1))
    results["seed_cnn_own_validation"] = own_validation.fit(
        X[:72], y[:72], X_val=X[72:], y_val=y[72:]).predict_proba(X_test)
    stream = SkinLesionClassifier(**BASE)
    for start in range(0, 96, 32):
        stream.partial_fit(X[start:start + 32], y[start:start + 32], classes=np.unique(y))
    results["seed_cnn_partial_fit"] = stream.predict_proba(X_test)
    warm = SkinLesionClassifier(**dict(BASE, warm_start=True)).fit(X, y)
    results["seed_cnn_warm_start"] = warm.fit(X, y).predict_proba(X_test)
    with tempfile.TemporaryDirectory() as folder:
        paths = save_image_folder(X, y, folder)
        from_files = SkinLesionClassifier(**dict(BASE, validation_fraction=0.2)).fit(paths, y)
        results["seed_cnn_paths"] = from_files.predict_proba(paths[:24])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", metavar="FILE")
    mode.add_argument("--compare", metavar="FILE")
    args = parser.parse_args()
    results = run()
    if args.save:
        np.savez(args.save, **results)
        print(f"saved {len(results)} configurations to {args.save}")
        return 0
    reference = np.load(args.compare)
    worst = 0.0
    for name, proba in results.items():
        difference = float(np.abs(proba - reference[name]).max())
        worst = max(worst, difference)
        print(f"{name:40s} max |difference| = {difference:.3g}")
    missing = sorted(set(reference.files) - set(results))
    if missing:
        print(f"missing configurations: {missing}")
    identical = worst == 0.0 and not missing
    print("bit-identical" if identical else "NOT identical")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
