"""What every engine (the NumPy reference, Numba, Cython) does with bad input at its entry
points, and what the two compiled engines share.

Every entry point returns the contract's ``STATUS_BAD_*`` for a loss, optimizer or schedule code
out of range, before any work (nothing is modified), and the driver turns it into an error
naming the code; every entry point refuses buffers of the wrong shape with ``ValueError``
(a compiled kernel would read or write out of bounds otherwise).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

from fastgd import LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd._backends import BACKENDS, available, get_backend
from fastgd.optim import OPTIMIZER_NAMES, AdaGrad, Adam, Adamax, NAdam, Optimizer, RMSprop, get_optimizer

ENGINES = [b for b in BACKENDS if available(b)]
COMPILED = [b for b in ("numba", "cython") if available(b)]
N, P = 12, 4


def _problem(dtype=np.float64, K=1):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, P)).astype(dtype)
    y = rng.standard_normal((N, K)).astype(dtype)
    sw = np.ones(N, dtype=dtype)
    coef = (0.1 * rng.standard_normal((P + 1, K))).astype(dtype)
    return X, y, sw, coef, rng.permutation(N).astype(np.int64)


def _arrays(optimizer="adam", schedule="constant", batch_size=4):
    est = LinearRegression(optimizer=optimizer, learning_rate=0.05, batch_size=batch_size, max_iter=3,
                           schedule=schedule)
    s = est._settings(get_optimizer(optimizer), N, C.LOSS_SQUARED, None)
    return s.codes, s.hp


def _dense_call(engine, **over):
    X, y, sw, coef, order = _problem()
    codes, hp = _arrays()
    kw = dict(X=X, y=y, sw=sw, order=order, coef=coef, state=np.zeros((2,) + coef.shape),
              t=np.zeros(1, np.int64), codes=codes, hp=hp, batch_size=4, grad=np.empty_like(coef),
              work=np.zeros((C.WORK_ROWS, 1)))
    kw.update(over)
    return kw, get_backend(engine).epoch_dense(*kw.values())


def _csr_call(engine, **over):
    X, y, sw, coef, order = _problem()
    X[np.abs(X) < 0.7] = 0.0
    Xs = sp.csr_matrix(X)
    codes, hp = _arrays()
    kw = dict(data=Xs.data, indices=Xs.indices, indptr=Xs.indptr, n_features=P, y=y, sw=sw, order=order,
              coef=coef, state=np.zeros((2,) + coef.shape), t=np.zeros(1, np.int64), codes=codes, hp=hp,
              batch_size=4, grad=np.empty_like(coef), work=np.zeros((C.WORK_ROWS, 1)),
              lazy_work=np.zeros((P, C.LAZY_FIELDS)), index_work=np.zeros((2, P + 1), np.int64),
              counters=np.zeros(C.N_COUNTERS, np.int64))
    kw.update(over)
    return kw, get_backend(engine).epoch_csr(*kw.values())


def _chunked_call(engine, **over):
    X, y, sw, coef, order = _problem()
    codes, hp = _arrays()
    kw = dict(X=X, y=y, sw=sw, order=order, coef=coef, state=np.zeros((2,) + coef.shape),
              t=np.zeros(1, np.int64), codes=codes, hp=hp, batch_size=4, grad=np.empty_like(coef),
              work=np.zeros((C.WORK_ROWS, 1)), partial=np.zeros((C.N_CHUNKS,) + coef.shape),
              pwork=np.zeros((C.N_CHUNKS, C.WORK_ROWS, 1)), losses=np.zeros(C.N_CHUNKS))
    kw.update(over)
    return kw, get_backend(engine).epoch_dense_chunked(*kw.values())


CALLS = {"dense": _dense_call, "csr": _csr_call, "chunked": _chunked_call}


def _entry(engine, kind):
    if kind == "chunked" and not hasattr(get_backend(engine), "epoch_dense_chunked"):
        pytest.skip(f"the {engine} engine has no multi-core entry point")
    return CALLS[kind]


BAD_CODES = [
    (C.C_LOSS, C.N_LOSSES, C.STATUS_BAD_LOSS), (C.C_LOSS, -1, C.STATUS_BAD_LOSS),
    (C.C_OPTIMIZER, C.N_OPTIMIZERS, C.STATUS_BAD_OPTIMIZER), (C.C_OPTIMIZER, -1, C.STATUS_BAD_OPTIMIZER),
    (C.C_SCHEDULE, C.N_SCHEDULES, C.STATUS_BAD_SCHEDULE), (C.C_SCHEDULE, -1, C.STATUS_BAD_SCHEDULE),
    (C.C_SCHEDULE_UNIT, C.N_UNITS, C.STATUS_BAD_SCHEDULE),
]


@pytest.mark.parametrize("slot, value, status", BAD_CODES, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", list(CALLS))
@pytest.mark.parametrize("engine", ENGINES)
def test_unknown_code_is_an_error_status(engine, kind, slot, value, status):
    call = _entry(engine, kind)
    codes, _ = _arrays()
    codes[slot] = value
    kw, (got, loss_sum) = call(engine, codes=codes)
    assert got == status
    kw2, (ok, _) = call(engine)
    assert ok == C.STATUS_OK
    # nothing was touched: the error is found before any work
    X, y, sw, coef, order = _problem()
    assert_allclose(kw["coef"], coef, rtol=0, atol=0)
    assert kw["t"][0] == 0 and not np.any(kw["state"])


class _Unknown(Optimizer):
    """An optimizer a backend does not know (a half-finished addition)."""

    code = 99

    def n_slots(self):
        return 0


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("engine", ENGINES)
def test_driver_names_the_unknown_code(engine, sparse):
    X, y, _, _, _ = _problem()
    X = sp.csr_matrix(X) if sparse else X
    est = LinearRegression(optimizer=_Unknown(), max_iter=2, backend=engine)
    with pytest.raises(ValueError, match="optimizer code 99"):
        est.fit(X, y[:, 0])


def _bad_shapes(kind):
    X, y, sw, coef, order = _problem()
    p1, K = coef.shape
    cases = [
        ("state", dict(state=np.zeros((1, p1, K)))),  # Adam needs two slots
        ("state", dict(state=np.zeros((2, p1 + 1, K)))),
        ("grad", dict(grad=np.zeros((p1 - 1, K)))),
        ("work", dict(work=np.zeros((1, K)))),
        ("inconsistent", dict(y=y[:-1])),
        ("inconsistent", dict(sw=sw[:-1])),
        ("batch_size", dict(batch_size=0)),
        ("codes / hp", dict(hp=np.zeros(C.N_HP - 1))),
    ]
    if kind == "dense":
        cases.append(("inconsistent", dict(X=X[:, :-1].copy())))
    if kind == "csr":
        Xs = sp.csr_matrix(X)
        cases += [
            ("inconsistent", dict(n_features=P - 1)),
            ("CSR", dict(indices=Xs.indices[:-1])),
            ("lazy_work", dict(lazy_work=np.zeros((P, C.LAZY_FIELDS - 1)))),
            ("index_work", dict(index_work=np.zeros((2, P), np.int64))),
            ("counters", dict(counters=np.zeros(1, np.int64))),
        ]
    if kind == "chunked":
        cases += [
            ("partial", dict(partial=np.zeros((C.N_CHUNKS - 1, p1, K)))),
            ("pwork", dict(pwork=np.zeros((C.N_CHUNKS, 1, K)))),
            ("losses", dict(losses=np.zeros(C.N_CHUNKS - 1))),
        ]
    return cases


@pytest.mark.parametrize("kind", list(CALLS))
@pytest.mark.parametrize("engine", ENGINES)
def test_wrongly_shaped_buffer_is_refused(engine, kind):
    call = _entry(engine, kind)
    for match, over in _bad_shapes(kind):
        with pytest.raises(ValueError, match=match):
            call(engine, **over)


# --- the compiled engines share their rules ------------------------------------------------


@pytest.mark.skipif(len(COMPILED) < 2, reason="needs both compiled engines")
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("Est", [LinearRegression, LogisticRegression])
def test_float32_compiled_engines_agree(Est, optimizer):
    """Both round float32 the same way (one source of the rules, in double): they differ only
    by the order of the margins' sums, far below float32's own error against the reference."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    y = X @ rng.standard_normal(6) + 0.1 * rng.standard_normal(200)
    y = (y > 0).astype(int) if Est is LogisticRegression else y
    fits = [Est(optimizer=optimizer, learning_rate=0.01, batch_size=16, max_iter=5, tol=None, penalty="l2",
                alpha=1e-3, random_state=0, backend=b).fit(X, y) for b in COMPILED]
    scale = np.max(np.abs(fits[0].coef_))
    assert_allclose(fits[1].coef_, fits[0].coef_, rtol=1e-6, atol=1e-6 * scale)
    assert_allclose(fits[1].intercept_, fits[0].intercept_, rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.skipif(not available("numba"), reason="needs Numba")
def test_numba_cache_tracks_the_rules():
    """Numba's on-disk cache keys a kernel on _numba.py only: the digest of _rules.py written
    there must be current, so that editing the rules invalidates the cached kernels."""
    nb = get_backend("numba")
    assert nb.RULES_DIGEST == nb.rules_digest(), (
        f"_rules.py changed: set RULES_DIGEST = {nb.rules_digest()!r} in fastgd/_backends/_numba.py")


# --- eps = 0 (issue 9, item 6) --------------------------------------------------------------
@pytest.mark.parametrize("Opt", [AdaGrad, RMSprop, Adam, Adamax, NAdam])
def test_zero_eps_is_refused_with_a_reason(Opt):
    with pytest.raises(ValueError, match="eps must be > 0.*0 by 0"):
        Opt(eps=0.0)


@pytest.mark.parametrize("optimizer", ["adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("engine", COMPILED)
def test_zero_eps_in_a_kernel_is_a_nonfinite_status_everywhere(engine, optimizer):
    """Below the estimators' check, a 0/0 (eps = 0, a constant zero column) is reported the
    same way by both compiled engines: a non-finite status, never an exception from inside a
    loop (Numba's kernels use NumPy's error model). The reference rebuilds the optimizer from
    the kernel arrays, so it refuses eps = 0 as the constructor does."""
    X, y, sw, coef, order = _problem()
    X[:, 1] = 0.0
    codes, hp = _arrays(optimizer)
    hp[C.H_EPS] = 0.0
    state = np.zeros((C.state_slots(codes, hp),) + coef.shape)
    status, _ = get_backend(engine).epoch_dense(X, y, sw, order, coef, state, np.zeros(1, np.int64), codes, hp, 4,
                                                np.empty_like(coef), np.zeros((C.WORK_ROWS, 1)))
    assert status == C.STATUS_NONFINITE


def test_zero_eps_in_the_reference_kernel_is_refused():
    X, y, sw, coef, order = _problem()
    codes, hp = _arrays("adagrad")
    hp[C.H_EPS] = 0.0
    with pytest.raises(ValueError, match="eps must be > 0"):
        get_backend("numpy").epoch_dense(X, y, sw, order, coef, np.zeros((1,) + coef.shape), np.zeros(1, np.int64),
                                         codes, hp, 4, np.empty_like(coef), np.zeros((C.WORK_ROWS, 1)))
