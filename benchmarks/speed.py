"""Speed: SkinLesionClassifier against a hand-written PyTorch loop, and paths against arrays.

Everything is measured in one run, interleaved, and reported as ratios, because these machines
are noisy. Usage::

    python benchmarks/speed.py              # about 6 minutes on 2 CPU cores
    python benchmarks/speed.py --quick      # a smoke run (tiny sizes), does not touch the docs
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from _common import command_line, machine_summary, markdown_table, write_section

from skinestimator import (
    SkinLesionClassifier,
    keep_freed_memory,
    make_synthetic_lesions,
    save_image_folder,
)
from skinestimator.networks import build_network


def hand_written_training(X, y, *, epochs, batch_size, lr, weight_decay, seed):
    """The plain PyTorch loop a user would write for the same network: seconds per epoch."""
    torch.manual_seed(seed)
    net = build_network("efficientnet_lite0", int(y.max()) + 1)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.from_numpy(X).permute(0, 3, 1, 2)
    targets = torch.from_numpy(y)
    durations = []
    net.train()
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(images))
        for i in range(0, len(order), batch_size):
            index = order[i:i + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(images[index]), targets[index])
            loss.backward()
            optimizer.step()
        durations.append(time.perf_counter() - start)
    return net, durations


def hand_written_inference(net, X, batch_size):
    net.eval()
    images = torch.from_numpy(X).permute(0, 3, 1, 2)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            net(images[i:i + batch_size]).softmax(dim=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-allocator", action="store_true",
                        help="do not call keep_freed_memory() (to measure its effect)")
    args = parser.parse_args()
    size = 64 if args.quick else 128
    n_train = 96 if args.quick else 640
    n_predict = 128 if args.quick else 1024
    epochs = 2 if args.quick else 3
    batch_size = 32
    allocator = False if args.no_allocator else keep_freed_memory()
    print("speed benchmark")
    print(f"  machine: {machine_summary()}")
    print(f"  data: synthetic lesions {size}x{size}, {n_train} training / {n_predict} predicted "
          f"images, batch {batch_size}, {epochs} epochs (epoch 1 excluded from throughput)")
    print(f"  network: EfficientNet-Lite0 (ImageNet weights), full fine-tune, AdamW; "
          f"keep_freed_memory: {allocator}")

    X, y_text = make_synthetic_lesions(n_samples=n_train, image_size=(size, size), n_classes=4,
                                       random_state=0)
    y = np.unique(y_text, return_inverse=True)[1].astype(np.int64)
    X_predict = np.concatenate([X] * (n_predict // n_train + 1))[:n_predict]
    folder = tempfile.mkdtemp(prefix="skinestimator-bench-")
    paths = save_image_folder(X, y_text, folder, format="jpg")
    params = dict(max_epochs=epochs, batch_size=batch_size, lr=1e-3, weight_decay=1e-2,
                  augment=False, validation_fraction=None, random_state=0)

    def per_second(durations, n):
        return n / float(np.mean(durations[1:]))

    rows, ratios = [], {}
    train_wrapper, train_hand, infer_wrapper, infer_hand = [], [], [], []
    for repeat in range(1 if args.quick else 2):
        clf = SkinLesionClassifier(**params).fit(X, y)
        train_wrapper.append(per_second([r["dur"] for r in clf.history_], n_train))
        net, durations = hand_written_training(X, y, epochs=epochs, batch_size=batch_size,
                                               lr=1e-3, weight_decay=1e-2, seed=0)
        train_hand.append(per_second(durations, n_train))
        clf.predict_proba(X_predict[:batch_size])  # warm-up
        start = time.perf_counter()
        clf.predict_proba(X_predict)
        infer_wrapper.append(n_predict / (time.perf_counter() - start))
        hand_written_inference(net, X_predict[:batch_size], batch_size)
        infer_hand.append(n_predict / hand_written_inference(net, X_predict, batch_size))
        print(f"  repeat {repeat + 1}: train {train_wrapper[-1]:.1f} vs {train_hand[-1]:.1f} "
              f"img/s, predict {infer_wrapper[-1]:.1f} vs {infer_hand[-1]:.1f} img/s")

    from_arrays, from_paths = [], []
    for _ in range(1 if args.quick else 2):
        clf = SkinLesionClassifier(**params, image_size=(size, size)).fit(paths, y_text)
        from_paths.append(per_second([r["dur"] for r in clf.history_], n_train))
        clf = SkinLesionClassifier(**params).fit(X, y_text)
        from_arrays.append(per_second([r["dur"] for r in clf.history_], n_train))
    ratios = {
        "training: SkinLesionClassifier / hand-written loop": (
            np.median(train_wrapper), np.median(train_hand), 0.95),
        "inference: predict_proba / hand-written loop": (
            np.median(infer_wrapper), np.median(infer_hand), 0.95),
        "training after epoch 1: from file paths / from arrays": (
            np.median(from_paths), np.median(from_arrays), 0.90),
    }
    for name, (ours, reference, target) in ratios.items():
        ratio = ours / reference
        rows.append({"comparison": name, "ours (img/s)": round(ours, 1),
                     "reference (img/s)": round(reference, 1), "ratio": ratio,
                     "target": f">= {target}", "met": "yes" if ratio >= target else "**no**"})
    throughput = float(np.median(infer_wrapper))
    rows.append({"comparison": f"predict_proba throughput at {size} px", "ours (img/s)":
                 round(throughput, 1), "reference (img/s)": "", "ratio": "",
                 "target": ">= 280 img/s", "met": "yes" if throughput >= 280 else "**no**"})
    table = markdown_table(rows, ["comparison", "ours (img/s)", "reference (img/s)", "ratio",
                                  "target", "met"])
    print()
    print(table)
    if not args.quick:
        write_section("speed", "\n".join([
            "## Speed: wrapper overhead, file paths, inference",
            "",
            f"Command: `{command_line()}`",
            "",
            f"Machine: {machine_summary()}. Synthetic {size} px lesions, {n_train} training images,"
            f" batch {batch_size}, EfficientNet-Lite0 full fine-tune, {epochs} epochs, throughput "
            "after epoch 1, median of 2 interleaved repeats; `keep_freed_memory()` "
            f"{'on' if allocator else 'off'}.",
            "",
            table,
        ]))


if __name__ == "__main__":
    main()
