"""
Calibrated probabilities and conformal prediction sets
======================================================

``SkinLesionClassifier`` calibrates its probabilities with a temperature fitted on its
validation split (``calibration="temperature"``) and gives conformal prediction
sets (``predict_set``) that hold the true condition with at least the probability asked, on
images like its calibration images. This example trains a small CNN on synthetic lesions and
checks both on held-out images: the reliability diagram before and after the temperature, and
the empirical coverage and size of the sets at several coverages, overall and per class.

Run::

    python examples/calibration_and_prediction_sets.py
"""

import matplotlib.pyplot as plt
import numpy as np

from skinestimator import ReliabilityDisplay, SkinLesionClassifier, make_synthetic_lesions
from skinestimator.uncertainty import apply_temperature

X, y = make_synthetic_lesions(n_samples=420, image_size=(32, 32), n_classes=6, random_state=0)
X_test, y_test = make_synthetic_lesions(n_samples=800, image_size=(32, 32), n_classes=6,
                                        random_state=1)
clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=2, batch_size=16, random_state=0,
                           validation_fraction=0.4, num_workers=0, calibration="temperature")
clf.fit(X, y)
print(f"temperature fitted on {len(clf.conformal_scores_.scores)} validation images: "
      f"{clf.temperature_:.2f}")

proba = clf.predict_proba(X_test)
raw = apply_temperature(np.log(np.clip(proba, 1e-12, None)), 1 / clf.temperature_)
assert (raw.argmax(1) == proba.argmax(1)).all()  # the temperature never changes predict

fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
ReliabilityDisplay.from_predictions(y_test, raw, ax=axes[0], name="raw")
ReliabilityDisplay.from_predictions(y_test, proba, ax=axes[1],
                                    name=f"temperature {clf.temperature_:.2f}")
plt.tight_layout()

index = np.searchsorted(clf.classes_, y_test)
levels = [0.5, 0.7, 0.8, 0.9, 0.95]
fig, ax = plt.subplots(figsize=(6, 4.5))
for by_class in (False, True):
    coverage, size = [], []
    for level in levels:
        sets = clf.predict_set(X_test, coverage=level, by_class=by_class)
        covered = sets[np.arange(len(index)), index]
        coverage.append(covered.mean())
        size.append(sets.sum(1).mean())
        worst = min(covered[index == k].mean() for k in range(len(clf.classes_)))
        print(f"coverage asked {level:.2f}, by_class={by_class}: got {covered.mean():.3f} "
              f"(worst class {worst:.3f}), mean set size {sets.sum(1).mean():.2f}")
    ax.plot(size, coverage, marker="o", label="per class" if by_class else "marginal")
for level in levels:
    ax.axhline(level, color="grey", linestyle=":", linewidth=0.7)
ax.set_xlabel("mean prediction-set size")
ax.set_ylabel("held-out coverage")
ax.set_title("Conformal prediction sets on held-out images")
ax.legend()
plt.tight_layout()
