"""fastgd: linear and logistic regression trained by compiled gradient-descent kernels.

Every gradient-descent variant (batch, stochastic, mini-batch; SGD, momentum, Nesterov,
AdaGrad, RMSprop, Adam; learning-rate schedules with warm-up; penalties; clipping) behind
scikit-learn estimators. One epoch is one compiled call.
"""

from fastgd.exceptions import DivergenceError
from fastgd.linear_model import LinearRegression, LogisticRegression

__version__ = "0.1.0"
__all__ = ["LinearRegression", "LogisticRegression", "SGDClassifier", "SGDRegressor", "DivergenceError",
           "__version__"]


def __getattr__(name):
    # SGDClassifier / SGDRegressor are imported on first use (see fastgd.linear_model)
    if name in ("SGDClassifier", "SGDRegressor"):
        import fastgd.linear_model

        return getattr(fastgd.linear_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
