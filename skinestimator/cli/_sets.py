"""``predict --coverage``: conformal prediction sets and the "uncertain: refer" flag."""

from __future__ import annotations

import sys
import warnings

import numpy as np

from ._errors import EXIT_MODEL, EXIT_USAGE, CLIError, one_line

__all__ = ["add_coverage_options", "sets_and_referrals"]


def add_coverage_options(p, *, unit_interval, positive_int) -> None:
    p.add_argument("--coverage", type=unit_interval, default=None, metavar="P",
                   help="also print each image's conformal prediction set, which holds the "
                        "true condition with probability at least P (e.g. 0.9), and flag it "
                        "'uncertain: refer' by --max-set-size and --min-probability")
    p.add_argument("--by-class", action="store_true",
                   help="class-conditional sets: the coverage holds for every condition")
    p.add_argument("--max-set-size", type=positive_int, default=1, metavar="K",
                   help="refer an image whose set holds more than K conditions")
    p.add_argument("--min-probability", type=unit_interval, default=0.5, metavar="Q",
                   help="refer an image whose most probable condition is under Q (0: never)")


def sets_and_referrals(clf, proba: np.ndarray, args):
    """``(sets, refer)``: per image the labels of its set (most probable first) and its flag;
    ``(None, None)`` without ``--coverage``."""
    if args.coverage is None:
        return None, None
    from skinestimator.uncertainty import (
        Referral,
        conformal_thresholds,
        prediction_sets,
        refer,
        set_labels,
    )
    from skinestimator.uncertainty._conformal import check_coverage

    try:
        check_coverage(args.coverage)
    except ValueError as exc:
        raise CLIError(f"--{exc}", EXIT_USAGE) from None
    calibration = getattr(clf, "conformal_scores_", None)
    if calibration is None:
        raise CLIError(f"'{args.model}' holds no calibration scores for --coverage (it was "
                       "trained without a validation split); retrain it with one",
                       EXIT_MODEL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thresholds = conformal_thresholds(calibration, args.coverage, by_class=args.by_class,
                                          class_names=clf.classes_)
    for warning in caught:
        print(f"note: {one_line(warning.message)}", flush=True, file=sys.stderr)
    sets = prediction_sets(proba, thresholds)
    flags = refer(proba, sets, Referral(args.max_set_size, args.min_probability))
    return set_labels(proba, sets, clf.classes_), flags
