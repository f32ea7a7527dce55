"""Training on Dask collections (fastgd.distributed), on a real LocalCluster of worker processes.

The cluster (2 worker processes, 1 thread each) is started once for the module and stopped at
its end. The workers run the backend the tests run (FASTGD_BACKEND is inherited, and the
backend name travels with every task).
"""

import os
import pickle
import signal

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastgd.distributed as fd  # noqa: E402
from fastgd import LinearRegression, LogisticRegression  # noqa: E402
from fastgd.optim import SGD, Adam, RMSprop  # noqa: E402
from fastgd.schedules import CosineAnnealing, Warmup  # noqa: E402

RTOL = 1e-10


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=40) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    """A client of the module's cluster, current for the test (and for no other test)."""
    with distributed.Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2)
        with client.as_current():
            yield client


@pytest.fixture
def shard_sizes(monkeypatch):
    """The sizes of the shards of each Dask fit of the test."""
    sizes = []
    original = fd.ShardedProblem.__init__

    def init(self, shards, *args, **kwargs):
        sizes.append(list(shards.sizes))
        original(self, shards, *args, **kwargs)

    monkeypatch.setattr(fd.ShardedProblem, "__init__", init)
    return sizes


def regression(n=240, p=6, k=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    W = rng.standard_normal((p,) if k is None else (p, k))
    y = X @ W + 0.3 + 0.1 * rng.standard_normal((n,) if k is None else (n, k))
    return X, y


def classification(n=240, p=5, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    z = X @ rng.standard_normal((p, classes))
    return X, np.argmax(z + 0.5 * rng.standard_normal(z.shape), axis=1)


def chunked(a, rows=70):
    return da.from_array(a, chunks=(rows,) + a.shape[1:])


def assert_same_fit(local, remote, rtol=RTOL):
    np.testing.assert_allclose(remote.coef_, local.coef_, rtol=rtol, atol=1e-13)
    np.testing.assert_allclose(remote.intercept_, local.intercept_, rtol=rtol, atol=1e-13)
    np.testing.assert_allclose(remote.loss_curve_, local.loss_curve_, rtol=rtol)
    assert remote.n_iter_ == local.n_iter_
    assert remote.t_ == local.t_
    assert isinstance(remote.coef_, np.ndarray)


# --- full-batch gradient descent: the local trajectory --------------------------------------------
FULL_BATCH_CASES = [
    dict(optimizer="sgd", learning_rate=0.1),
    dict(optimizer="momentum", learning_rate=0.02, schedule="step"),
    dict(optimizer="nesterov", learning_rate=0.02, penalty="l2", alpha=0.01),
    dict(optimizer="adagrad", learning_rate=0.3, penalty="l1", alpha=0.02),
    dict(optimizer=RMSprop(), learning_rate=0.01, penalty="elasticnet", alpha=0.01, schedule="cosine"),
    dict(optimizer="adam", learning_rate=0.05, penalty="l1", alpha=0.05, clip_norm=0.5),
    dict(optimizer="amsgrad", learning_rate=0.05, schedule=Warmup(CosineAnnealing(), warmup=5)),
    dict(optimizer="adamw", learning_rate=0.05, schedule="invscaling"),
    dict(optimizer="sgd", learning_rate=0.1, schedule="plateau", penalty="l1", alpha=0.01),
]


@pytest.mark.parametrize("params", FULL_BATCH_CASES, ids=lambda p: "-".join(f"{v}" for v in p.values()))
def test_full_batch_regression_follows_the_local_trajectory(client, params, shard_sizes):
    X, y = regression()
    local = LinearRegression(max_iter=25, tol=None, **params).fit(X, y)
    remote = LinearRegression(max_iter=25, tol=None, **params).fit(chunked(X), chunked(y))
    assert shard_sizes == [[140, 100]]  # blocks of 70 rows: 2 + 2 on one worker each (split by rows)
    assert_same_fit(local, remote)


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("params", FULL_BATCH_CASES[::3], ids=lambda p: str(p["optimizer"]))
def test_full_batch_classification_follows_the_local_trajectory(client, classes, params):
    X, y = classification(classes=classes)
    labels = np.array(["ant", "bee", "cat"])[y]
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    kw = dict(max_iter=20, tol=None, class_weight="balanced", **params)
    local = LogisticRegression(**kw).fit(X, labels, sample_weight=sw)
    remote = LogisticRegression(**kw).fit(chunked(X), chunked(labels), sample_weight=chunked(sw))
    np.testing.assert_array_equal(remote.classes_, local.classes_)
    assert_same_fit(local, remote)


def test_full_batch_multi_output_float32_and_stopping_tests(client):
    X, y = regression(k=3)
    for kw in (dict(tol=1e-3, n_iter_no_change=3), dict(tol=None, grad_tol=1.0)):
        local = LinearRegression(optimizer="adam", learning_rate=0.2, max_iter=300, **kw).fit(X, y)
        remote = LinearRegression(optimizer="adam", learning_rate=0.2, max_iter=300, **kw).fit(chunked(X), chunked(y))
        assert local.n_iter_ < 300  # the convergence test stopped both, at the same epoch
        assert_same_fit(local, remote)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    local = LinearRegression(optimizer="sgd", learning_rate=0.05, max_iter=20, tol=None).fit(X32, y32)
    remote = LinearRegression(optimizer="sgd", learning_rate=0.05, max_iter=20, tol=None).fit(chunked(X32), chunked(y32))
    assert remote.coef_.dtype == np.float32
    assert_same_fit(local, remote, rtol=1e-4)


def test_full_batch_converges_to_least_squares(client):
    X, y = regression(n=300)
    reg = LinearRegression(optimizer="sgd", learning_rate=0.3, max_iter=60, tol=None).fit(chunked(X, 50), chunked(y, 50))
    A = np.column_stack([X, np.ones(len(X))])
    exact = np.linalg.lstsq(A, y, rcond=None)[0]
    np.testing.assert_allclose(np.append(reg.coef_, reg.intercept_), exact, rtol=1e-8)


def test_csr_blocks_follow_the_local_sparse_trajectory(client):
    sp = pytest.importorskip("scipy.sparse")
    X, y = classification(classes=3)
    X[X < 0.3] = 0.0
    dX = chunked(X).map_blocks(sp.csr_matrix, dtype=X.dtype, meta=sp.csr_matrix((0, X.shape[1])))
    kw = dict(optimizer="adagrad", learning_rate=0.2, penalty="l1", alpha=0.01, max_iter=15, tol=None)
    local = LogisticRegression(**kw).fit(sp.csr_matrix(X), y)
    remote = LogisticRegression(**kw).fit(dX, chunked(y))
    assert_same_fit(local, remote)
    np.testing.assert_allclose(remote.predict_proba(dX).compute(), local.predict_proba(X), rtol=RTOL)


def test_dask_dataframe_input_records_feature_names(client):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = regression()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    ddf = dd.from_pandas(frame, npartitions=3)
    local = LinearRegression(max_iter=15, tol=None, learning_rate=0.05).fit(frame, y)
    remote = LinearRegression(max_iter=15, tol=None, learning_rate=0.05).fit(ddf, dd.from_pandas(pd.Series(y), npartitions=3))
    assert_same_fit(local, remote)
    np.testing.assert_array_equal(remote.feature_names_in_, frame.columns)
    np.testing.assert_allclose(remote.predict(ddf).compute(), local.predict(frame), rtol=RTOL)


def test_fitted_model_pickles_like_a_local_one(client):
    X, y = classification(classes=3)
    clf = LogisticRegression(max_iter=10, tol=None).fit(chunked(X), chunked(y))
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))


# --- mini-batch and per-sample SGD: parameter mixing ----------------------------------------------
AVERAGING_CASES = [
    dict(optimizer="sgd", batch_size=1, penalty="l1", alpha=0.01),
    dict(optimizer=SGD(momentum=0.9, nesterov=True), batch_size=16, learning_rate=0.005, schedule="cosine"),
    dict(optimizer=Adam(), batch_size=32, clip_norm=1.0),
]


def test_one_worker_equals_a_local_fit_exactly():
    X, y = regression()
    with distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=40) as one, distributed.Client(one, set_as_default=False) as client:
        for params in AVERAGING_CASES:
            local = LinearRegression(max_iter=4, tol=None, random_state=3, **params).fit(X, y)
            with client.as_current():
                remote = LinearRegression(max_iter=4, tol=None, random_state=3, **params).fit(chunked(X), chunked(y))
            np.testing.assert_array_equal(remote.coef_, local.coef_)
            np.testing.assert_array_equal(remote.intercept_, local.intercept_)
            assert remote.loss_curve_ == local.loss_curve_
            assert remote.t_ == local.t_


def test_local_scheduler_without_a_client_equals_a_local_fit():
    assert fd._active_client() is None
    X, y = classification(classes=3)
    for params in (dict(batch_size=8), dict(batch_size=None)):
        local = LogisticRegression(max_iter=5, tol=None, random_state=0, **params).fit(X, y)
        remote = LogisticRegression(max_iter=5, tol=None, random_state=0, **params).fit(chunked(X), chunked(y))
        assert_same_fit(local, remote)
        proba = remote.predict_proba(chunked(X))
        assert isinstance(proba, da.Array)
        np.testing.assert_allclose(proba.compute(), local.predict_proba(X), rtol=RTOL)


def objective(reg, X, y, alpha=0.0):
    r = X @ reg.coef_ + reg.intercept_ - y
    return float(np.mean(r * r)) + 0.5 * alpha * float(reg.coef_ @ reg.coef_)


@pytest.mark.parametrize("sync", [None, 10])
def test_two_workers_averaging_converges_near_the_local_fit(client, sync, shard_sizes):
    X, y = regression(n=400, seed=4)
    kw = dict(optimizer="sgd", batch_size=10, learning_rate=0.05, max_iter=10, tol=None, random_state=0,
              penalty="l2", alpha=1e-3)
    local = LinearRegression(**kw).fit(X, y)
    remote = fd.fit(LinearRegression(**kw), chunked(X, 100), chunked(y, 100), sync=sync)
    assert shard_sizes == [[200, 200]]
    assert remote.t_ == 10 * 20  # 200 samples a worker, 20 steps an epoch each
    # not the local trajectory (the workers see different halves of the data) ...
    assert not np.allclose(remote.coef_, local.coef_, rtol=1e-6)
    # ... but the same model to within a few percent of the objective's distance from zero
    A = np.column_stack([X, np.ones(len(X))])
    best = np.linalg.lstsq(A, y, rcond=None)[0]
    floor = float(np.mean((A @ best - y) ** 2))
    assert objective(local, X, y) < 1.05 * floor
    assert objective(remote, X, y) < 1.10 * floor
    np.testing.assert_allclose(remote.coef_, local.coef_, rtol=0.05, atol=0.02)


def test_sync_out_of_range_is_rejected(client):
    X, y = regression()
    with pytest.raises(ValueError, match="sync must be a positive"):
        fd.fit(LinearRegression(batch_size=4), chunked(X), chunked(y), sync=0)


# --- prediction on Dask input ------------------------------------------------------------------------
def test_predictions_on_dask_input_are_lazy_blockwise_and_equal_local_ones(client):
    X, y = classification(classes=3)
    labels = np.array(["ant", "bee", "cat"])[y]
    clf = LogisticRegression(max_iter=10, tol=None).fit(X, labels)
    dX = chunked(X, 50)
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        out = getattr(clf, method)(dX)
        assert isinstance(out, da.Array)
        assert out.chunks[0] == dX.chunks[0]
        expected = getattr(clf, method)(X)
        assert out.dtype == expected.dtype
        result = out.compute()
        if result.dtype.kind == "f":
            np.testing.assert_allclose(result, expected, rtol=RTOL)
        else:
            np.testing.assert_array_equal(result, expected)
    binary = LogisticRegression(max_iter=10, tol=None).fit(X, y == 1)
    assert binary.decision_function(dX).shape == (len(X),)
    np.testing.assert_array_equal(binary.predict(dX).compute(), binary.predict(X))
    Xr, yr = regression(k=2)
    reg = LinearRegression(max_iter=10, tol=None).fit(Xr, yr)
    np.testing.assert_allclose(reg.predict(chunked(Xr)).compute(), reg.predict(Xr), rtol=RTOL)


def test_prediction_with_the_wrong_number_of_features_fails_like_a_local_one(client):
    X, y = regression()
    reg = LinearRegression(max_iter=5, tol=None).fit(X, y)
    with pytest.raises(ValueError) as local:
        reg.predict(X[:, :3])
    with pytest.raises(ValueError) as remote:
        reg.predict(chunked(X[:, :3]))
    assert str(remote.value) == str(local.value)


# --- bad input: the errors of a local fit -------------------------------------------------------------
def local_and_dask_errors(make, X, y, **kw):
    with pytest.raises(ValueError) as local:
        make().fit(X, y, **kw)
    dkw = {k: chunked(v) for k, v in kw.items()}
    with pytest.raises(ValueError) as remote:
        make().fit(chunked(X), chunked(y), **dkw)
    return str(local.value), str(remote.value)


def test_nan_and_inf_give_the_local_errors(client):
    X, y = regression()
    Xn = X.copy()
    Xn[100, 2] = np.nan
    assert "NaN" in local_and_dask_errors(LinearRegression, Xn, y)[1]
    assert len(set(local_and_dask_errors(LinearRegression, Xn, y))) == 1
    yn = y.copy()
    yn[200] = np.inf
    assert len(set(local_and_dask_errors(LinearRegression, X, yn))) == 1
    assert len(set(local_and_dask_errors(LinearRegression, X, y, sample_weight=-np.ones(len(y))))) == 1
    labels = (y > 0).astype(float)
    labels[7] = np.nan
    local, remote = local_and_dask_errors(LogisticRegression, X, labels)
    assert local == remote and "NaN" in remote


def test_non_numeric_features_and_labels_give_the_local_errors(client):
    X, y = regression()
    Xs = X.astype(str).astype(object)
    Xs[5, 1] = "five"
    local, remote = local_and_dask_errors(LinearRegression, Xs, y)
    assert local == remote and "five" in remote
    local, remote = local_and_dask_errors(LinearRegression, np.array([[b"a", b"b"]] * len(y)), y)
    assert local == remote and "could not convert" in remote
    local, remote = local_and_dask_errors(LogisticRegression, X, y)  # continuous labels
    assert local == remote and "Unknown label type" in remote
    local, remote = local_and_dask_errors(LogisticRegression, X, np.zeros(len(y)))
    assert local == remote and "only one class" in remote


def test_row_counts_and_chunking(client):
    X, y = regression()
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[240, 239\]"):
        LinearRegression().fit(chunked(X), chunked(y[:-1]))
    # The same rows chunked differently are aligned, not refused.
    local = LinearRegression(max_iter=10, tol=None, learning_rate=0.05).fit(X, y)
    remote = LinearRegression(max_iter=10, tol=None, learning_rate=0.05).fit(chunked(X, 70), chunked(y, 33))
    assert_same_fit(local, remote)
    # Chunked along the features too: the columns are joined into one block per row chunk.
    remote = LinearRegression(max_iter=10, tol=None, learning_rate=0.05).fit(da.from_array(X, chunks=(70, 4)), y)
    assert_same_fit(local, remote)


def test_unknown_chunk_sizes_are_refused_with_the_fix(client):
    X, y = regression()
    dX, dy = chunked(X), chunked(y)
    keep = dy > 0
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        LinearRegression().fit(dX[keep], dy[keep])
    sub_X, sub_y = dX[keep], dy[keep]
    sub_X.compute_chunk_sizes()
    sub_y.compute_chunk_sizes()
    reg = LinearRegression(max_iter=5, tol=None, learning_rate=0.05).fit(sub_X, sub_y)
    local = LinearRegression(max_iter=5, tol=None, learning_rate=0.05).fit(X[y > 0], y[y > 0])
    assert_same_fit(local, reg)


def test_a_failed_fit_leaves_the_fitted_model_unchanged(client):
    X, y = regression()
    reg = LinearRegression(max_iter=5, tol=None).fit(chunked(X), chunked(y))
    before = (reg.coef_.copy(), reg.intercept_.copy(), list(reg.loss_curve_))
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reg.fit(chunked(Xn), chunked(y))
    np.testing.assert_array_equal(reg.coef_, before[0])
    assert reg.loss_curve_ == before[2]


def test_unsupported_options_say_so(client):
    X, y = regression()
    with pytest.raises(ValueError, match="early_stopping"):
        LinearRegression(early_stopping=True).fit(chunked(X), chunked(y))
    reg = LinearRegression().fit(X, y)
    with pytest.raises(ValueError, match="Incremental"):
        reg.partial_fit(chunked(X), chunked(y))


def test_divergence_raises_and_keeps_the_last_finite_epoch(client):
    from fastgd.exceptions import DivergenceError

    X, y = regression()
    with pytest.raises(DivergenceError) as local_err:
        LinearRegression(optimizer="sgd", learning_rate=1e3, max_iter=50, tol=None).fit(X, y)
    remote = LinearRegression(optimizer="sgd", learning_rate=1e3, max_iter=50, tol=None)
    with pytest.raises(DivergenceError) as remote_err:
        remote.fit(chunked(X), chunked(y))
    assert remote_err.value.epoch == local_err.value.epoch
    assert np.all(np.isfinite(remote.coef_))


# --- a worker killed in the middle of a fit ----------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 16])
def test_a_worker_killed_mid_fit_is_recomputed_and_the_model_is_unchanged(client, monkeypatch, batch_size):
    X, y = regression(n=300)
    kw = dict(optimizer="adam", batch_size=batch_size, max_iter=8, tol=None, random_state=0)
    expected = LinearRegression(**kw).fit(chunked(X, 60), chunked(y, 60))
    pids = client.run(os.getpid)
    killed = []
    original = fd.ShardedProblem.epoch

    def epoch(self, backend, order, ts, *args, **kwargs):
        if ts.n_iter == 3 and not killed:  # mid-fit: after 3 epochs, kill a worker holding a shard
            holder = sorted(client.who_has(self.shards.futures)[self.shards.futures[0].key])[0]
            os.kill(pids[holder], signal.SIGKILL)
            killed.append(pids[holder])
        return original(self, backend, order, ts, *args, **kwargs)

    monkeypatch.setattr(fd.ShardedProblem, "epoch", epoch)
    remote = LinearRegression(**kw).fit(chunked(X, 60), chunked(y, 60))
    assert killed
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)  # the worker process is gone
    np.testing.assert_array_equal(remote.coef_, expected.coef_)
    assert remote.loss_curve_ == expected.loss_curve_
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


# --- dask-ml -------------------------------------------------------------------------------------------
def test_dask_ml_incremental_streams_blocks_into_partial_fit(client):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = classification()
    inc = wrappers.Incremental(LogisticRegression(batch_size=32, random_state=0), scoring="accuracy",
                               shuffle_blocks=False)
    inc.fit(chunked(X, 60), chunked(y, 60), classes=[0, 1])
    local = LogisticRegression(batch_size=32, random_state=0)
    for lo in range(0, len(X), 60):
        local.partial_fit(X[lo:lo + 60], y[lo:lo + 60], classes=[0, 1])
    np.testing.assert_array_equal(inc.estimator_.coef_, local.coef_)
    assert inc.score(chunked(X, 60), chunked(y, 60)) > 0.8


def test_dask_ml_parallel_post_fit_predicts_block_wise(client):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = classification(classes=3)
    ppf = wrappers.ParallelPostFit(LogisticRegression(max_iter=20, tol=None)).fit(X, y)
    proba = ppf.predict_proba(chunked(X, 50))
    assert isinstance(proba, da.Array)
    np.testing.assert_allclose(proba.compute(), ppf.estimator.predict_proba(X), rtol=RTOL)
    np.testing.assert_array_equal(ppf.predict(chunked(X, 50)).compute(), ppf.estimator.predict(X))


def test_max_iter_reached_warns_as_locally(client):
    X, y = regression()
    with pytest.warns(ConvergenceWarning):
        LinearRegression(max_iter=2, tol=1e-12).fit(chunked(X), chunked(y))



def test_auto_step_on_shards_is_a_safe_bound_of_the_local_one(client):
    # learning_rate="auto" on several shards: the weighted harmonic mean of the shards' steps,
    # never larger than the whole data's step (the Gram matrix's top eigenvalue is convex), up
    # to the power iteration's 1 % tolerance
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 4)) * np.array([1.0, 3.0, 0.5, 2.0])
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.standard_normal(300)
    local = LinearRegression(max_iter=3, tol=None).fit(X, y)
    remote = LinearRegression(max_iter=3, tol=None).fit(da.from_array(X, chunks=(100, 4)), da.from_array(y, chunks=100))
    assert 0 < remote.learning_rate_ <= local.learning_rate_ * 1.02
    assert remote.learning_rate_history_[0] == (0, remote.learning_rate_, "auto")
    converged = LinearRegression().fit(da.from_array(X, chunks=(100, 4)), da.from_array(y, chunks=100))
    best = np.linalg.lstsq(np.c_[X, np.ones(300)], y, rcond=None)[0]
    mse_best = np.mean((np.c_[X, np.ones(300)] @ best - y) ** 2)
    mse = np.mean((X @ converged.coef_ + converged.intercept_ - y) ** 2)
    assert 0 <= (mse - mse_best) / np.var(y) < 1e-3  # R^2 within 1e-3 of the least-squares optimum's
