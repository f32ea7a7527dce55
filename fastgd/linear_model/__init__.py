"""The estimators: linear and logistic regression trained by gradient descent, and drop-ins for
scikit-learn's SGDClassifier / SGDRegressor."""

from fastgd.linear_model._linear import LinearRegression
from fastgd.linear_model._logistic import LogisticRegression

__all__ = ["LinearRegression", "LogisticRegression", "SGDClassifier", "SGDRegressor"]


def __getattr__(name):
    # The scikit-learn drop-ins import scikit-learn's linear_model (a few tenths of a second):
    # only a program that uses them pays for it.
    if name in ("SGDClassifier", "SGDRegressor"):
        from fastgd.linear_model import _sgd

        return getattr(_sgd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
