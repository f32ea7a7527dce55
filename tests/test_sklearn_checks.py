"""scikit-learn's estimator checks, run unmodified (no expected failures)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from fastgd import LinearRegression, LogisticRegression


@parametrize_with_checks([LinearRegression(), LogisticRegression()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
