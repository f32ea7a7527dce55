"""fastgd: linear and logistic regression trained by compiled gradient-descent kernels.

Every gradient-descent variant (batch, stochastic, mini-batch; SGD, momentum, Nesterov,
AdaGrad, RMSprop, Adam; learning-rate schedules with warm-up; penalties; clipping) behind
scikit-learn estimators. One epoch is one compiled call.
"""

from fastgd.exceptions import DivergenceError
from fastgd.linear_model import LinearRegression, LogisticRegression

__version__ = "0.1.0"
__all__ = ["LinearRegression", "LogisticRegression", "SGDClassifier", "SGDRegressor", "DivergenceError",
           "datasets", "__version__"]


def __getattr__(name):
    # Imported on first use, to keep them out of the cold start of a plain model fit:
    # ``fastgd.datasets`` loads scikit-learn's svmlight reader, and SGDClassifier /
    # SGDRegressor scikit-learn's linear_model (see fastgd.linear_model).
    import importlib

    if name == "datasets":
        return importlib.import_module("fastgd.datasets")
    if name in ("SGDClassifier", "SGDRegressor"):
        return getattr(importlib.import_module("fastgd.linear_model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
