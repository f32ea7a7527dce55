"""fastgd: linear and logistic regression trained by compiled gradient-descent kernels.

Every gradient-descent variant (batch, stochastic, mini-batch; SGD, momentum, Nesterov,
AdaGrad, RMSprop, Adam; learning-rate schedules with warm-up; penalties; clipping) behind
scikit-learn estimators. One epoch is one compiled call.
"""

from fastgd.exceptions import DivergenceError
from fastgd.linear_model import LinearRegression, LogisticRegression

__version__ = "0.1.0"
__all__ = ["LinearRegression", "LogisticRegression", "DivergenceError", "datasets", "__version__"]


def __getattr__(name):
    # ``fastgd.datasets`` after a plain ``import fastgd``, imported on first use: it loads
    # scikit-learn's svmlight reader, which a model fit does not need at start-up.
    if name == "datasets":
        import importlib

        return importlib.import_module("fastgd.datasets")
    raise AttributeError(f"module 'fastgd' has no attribute {name!r}")
