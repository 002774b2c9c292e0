"""finebert: fine-tune BERT-family encoders for text classification.

    import finebert
    clf = finebert.train("reviews.csv", output="model/")    # -> Classifier
    result = finebert.tune("reviews.csv", output="best/", trials=12)  # search settings, keep the best model
    clf = finebert.Classifier.load("model/")
    clf.predict("I really enjoyed the movie!")             # -> "positive"
    clf.predict_proba(["great", "awful"])                  # -> array (2, n_classes)

Importing finebert is cheap: torch and transformers load on first use.
"""

__all__ = ["train", "tune", "distill", "evaluate", "audit", "Classifier", "TrainConfig", "FinebertError", "__version__"]

from finebert.config import TrainConfig
from finebert.errors import FinebertError
from finebert.version import __version__


def __getattr__(name):  # lazy: `finebert.Classifier` imports torch only when touched
    if name == "Classifier":
        from finebert.inference import Classifier

        return Classifier
    if name == "train":
        from finebert.training import train

        return train
    if name == "tune":
        from finebert.tuning import tune

        return tune
    if name == "distill":
        from finebert.training.distill import distill

        return distill
    if name == "evaluate":
        from finebert.evaluation import evaluate

        return evaluate
    if name == "audit":
        from finebert.auditing import audit

        return audit
    raise AttributeError(f"module 'finebert' has no attribute {name!r}")
