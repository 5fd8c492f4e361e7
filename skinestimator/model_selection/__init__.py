"""Model selection for skin-lesion classifiers: Optuna search and group-aware CV.

scikit-learn's own ``GridSearchCV``, ``RandomizedSearchCV`` and
``HalvingGridSearchCV`` work on :class:`~skinestimator.SkinLesionClassifier`
unchanged; :class:`OptunaLesionSearchCV` adds Bayesian search with per-epoch
pruning and persistent, resumable studies.
"""

from ._optuna import OptunaLesionSearchCV
from ._space import default_search_space, suggest_params, to_estimator_params
from ._split import check_group_cv, check_groups_disjoint, fit_grouped, grouped_validation_split
from ._storage import open_storage

__all__ = [
    "OptunaLesionSearchCV",
    "check_group_cv",
    "check_groups_disjoint",
    "default_search_space",
    "fit_grouped",
    "grouped_validation_split",
    "open_storage",
    "suggest_params",
    "to_estimator_params",
]
