"""scikit-learn's estimator checks, run unmodified (no expected failures)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from fastgd import LinearRegression, LogisticRegression, SGDClassifier, SGDRegressor


@parametrize_with_checks([LinearRegression(), LogisticRegression(), SGDClassifier(), SGDRegressor()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
