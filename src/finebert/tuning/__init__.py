"""Hyperparameter search over ordinary training runs, with the best model kept.

    study.py    tune(): the Optuna study (storage, record, pruning, the loop), the best trial's model kept
    space.py    the search space: the default, a YAML file's entries checked, one trial's values drawn
    results.py  trials.csv, the plots, report/tuning.html, the progress bar and the summary table

    import finebert
    result = finebert.tune("reviews.csv", output="best/", trials=12)   # needs pip install 'finebert[tune]'
"""

from finebert.tuning.space import Choice, Range, default_space, read_space
from finebert.tuning.study import TuneResult, tune

__all__ = ["tune", "TuneResult", "Range", "Choice", "default_space", "read_space"]
