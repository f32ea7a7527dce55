"""The estimators: linear and logistic regression trained by gradient descent, and drop-ins for
scikit-learn's SGDClassifier / SGDRegressor."""

from fastgd.linear_model._linear import LinearRegression
from fastgd.linear_model._logistic import LogisticRegression
from fastgd.linear_model._sgd import SGDClassifier, SGDRegressor

__all__ = ["LinearRegression", "LogisticRegression", "SGDClassifier", "SGDRegressor"]
