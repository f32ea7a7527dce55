"""scikit-learn's estimator checks, run unmodified."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from fastgd import LinearRegression, LogisticRegression, SGDClassifier, SGDRegressor

# Per-sample SGD is not invariant to replacing a weight-k sample by k copies of it (the copies
# are k separate steps, each at its own learning rate): scikit-learn lists these two checks as
# expected failures of its own SGDClassifier and SGDRegressor, with this reason.
_SGD_SAMPLE_WEIGHT_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": "sample_weight is not equivalent to removing/repeating samples.",
    "check_sample_weight_equivalence_on_sparse_data": "sample_weight is not equivalent to removing/repeating samples.",
}


def _expected_failures(estimator):
    return _SGD_SAMPLE_WEIGHT_CHECKS if isinstance(estimator, (SGDClassifier, SGDRegressor)) else {}


@parametrize_with_checks([LinearRegression(), LogisticRegression(), SGDClassifier(), SGDRegressor()],
                         expected_failed_checks=_expected_failures)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
