"""The estimators: linear and logistic regression trained by gradient descent."""

from fastgd.linear_model._linear import LinearRegression
from fastgd.linear_model._logistic import LogisticRegression

__all__ = ["LinearRegression", "LogisticRegression"]
