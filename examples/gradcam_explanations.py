"""
Grad-CAM: what the network looked at
====================================

``explain`` computes a Grad-CAM heatmap per image (which regions raised the score of a class),
and ``overlay_heatmap`` blends it over the image. A small CNN learns three synthetic lesion
types; the heatmaps show where it found the evidence for each prediction. A heatmap shows what
the model used, not what is medically relevant.

Run::

    python examples/gradcam_explanations.py
"""

import matplotlib.pyplot as plt

from skinestimator import SkinLesionClassifier, explain, make_synthetic_lesions, overlay_heatmap

X, y = make_synthetic_lesions(n_samples=240, image_size=(64, 64), n_classes=3, random_state=0)
clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=8, batch_size=16, random_state=0,
                           num_workers=0).fit(X, y)

X_new, y_new = make_synthetic_lesions(n_samples=6, image_size=(64, 64), n_classes=3,
                                      random_state=1)
predicted = clf.predict(X_new)
heatmaps = explain(clf, X_new)  # for the predicted class of each image

fig, axes = plt.subplots(2, len(X_new), figsize=(2 * len(X_new), 4.4))
for i, (image, heatmap) in enumerate(zip(X_new, heatmaps, strict=True)):
    axes[0, i].imshow(image)
    axes[0, i].set_title(f"true: {y_new[i]}", fontsize=8)
    axes[1, i].imshow(overlay_heatmap(image, heatmap, size=(128, 128)))
    axes[1, i].set_title(f"predicted: {predicted[i]}", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
fig.suptitle("Synthetic lesions (top) and their Grad-CAM overlays (bottom)")
plt.tight_layout()
