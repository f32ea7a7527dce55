"""The Numba backend: the kernel contract compiled just in time (cached on disk).

One call trains one epoch. Inside: no Python, no allocation, the GIL released (``nogil``),
branches on the integer codes taken outside the per-coordinate loops. ``epoch_dense`` and
``epoch_csr`` are thin Python functions that pick, once per epoch, one of several separately
compiled kernels (fused per-sample SGD, single- or multi-output batch loops, the sparse
paths): each is compiled on first use for the dtypes it meets and cached on disk
(``cache=True``), so a fit compiles only what it uses and a second process pays only the
cache load. ``epoch_dense_chunked`` sums large batches on all cores (``prange``).

Every kernel uses NumPy's error model, as C does: a division by zero gives inf or NaN, which
the kernel reports as ``STATUS_NONFINITE``, never a ``ZeroDivisionError`` from inside a loop.
"""

from fastgd._backends import _numba_cache

# Before any kernel is decorated: a cache folder private to this user (or none shared).
_numba_cache.configure(__file__)

import inspect  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import get_thread_id, njit, prange, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402
from numba.np.arrayobj import populate_array  # noqa: E402

from fastgd import _contract as C  # noqa: E402
from fastgd._backends import _rules  # noqa: E402

name = "numba"


# The digest of _rules.py the kernels below were last compiled with. Numba's on-disk cache
# keys a kernel on the file defining it (this one), not on the functions it inlines from
# _rules.py: changing this line with _rules.py invalidates the cache (tests/test_engines.py
# checks it is current).
RULES_DIGEST = "d3756001b1731378"


def rules_digest():
    """SHA-256 of the source of :mod:`fastgd._backends._rules` (first 16 hex digits)."""
    import hashlib

    with open(_rules.__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _compile_rules():
    """Make every function of :mod:`fastgd._backends._rules` a Numba function, in the module's
    own namespace (so the rules' calls to each other resolve to the compiled versions), and
    its loop index ``_at`` the unsigned cast :func:`_u` (defined below; names resolve when a
    rule first compiles). Numba's on-disk cache keys a kernel on the file that defines it:
    after editing ``_rules.py`` alone, clear the cache (``__pycache__``) or touch this file."""
    ns = vars(_rules)
    for rule_name, fn in list(ns.items()):
        if inspect.isfunction(fn) and fn.__module__ == _rules.__name__ and rule_name != "_at":
            inline = "always" if rule_name in _rules.NUMBA_INLINE else "never"
            ns[rule_name] = njit(cache=True, nogil=True, error_model="numpy", inline=inline)(fn)


_compile_rules()

_C_LOSS, _C_OPT, _C_NEST, _C_AMS = C.C_LOSS, C.C_OPTIMIZER, C.C_NESTEROV, C.C_AMSGRAD
_C_SCHED, _C_UNIT = C.C_SCHEDULE, C.C_SCHEDULE_UNIT
_LOSS_SQUARED = C.LOSS_SQUARED
_OPT_RMSPROP, _OPT_SGD = C.OPT_RMSPROP, C.OPT_SGD
_H_L2, _H_L1, _H_RHO, _H_EPS = C.H_L2, C.H_L1, C.H_RHO, C.H_EPS
_S_SUM = C.S_SUM
_OK, _NONFINITE = C.STATUS_OK, C.STATUS_NONFINITE


# Shuffled per-sample epochs are bound by the latency of fetching each random row from
# memory, not by arithmetic: asking for the row PREFETCH_AHEAD samples ahead hides most of it
# (bench/: 3-4x on the shuffled dot-product loop of a 200,000 x 100 float64 array).
PREFETCH_AHEAD = 4
# the per-sample CSR kernels prefetch each coming row's weights only when the weights do not
# fit in one core's L2 (Cython's WEIGHT_PREFETCH_MIN_BYTES, the same)
WEIGHT_PREFETCH_MIN_BYTES = 1 << 20
_CACHE_LINE = 64
_U1, _U2 = np.uint64(1), np.uint64(2)


def _emit_prefetch(builder, addr):
    """``llvm.prefetch`` (read, keep in all cache levels) of the byte at ``addr`` (an i8*)."""
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                        "llvm.prefetch.p0i8")
    builder.call(fn, [addr, i32(0), i32(3), i32(1)])


def _emit_prefetch_bytes(builder, start, n_bytes):
    """Prefetch every cache line of the ``n_bytes`` (i64) from ``start`` (i8*), the last
    byte's line included (``start`` need not be line-aligned)."""
    i64 = ir.IntType(64)
    with builder.if_then(builder.icmp_signed(">", n_bytes, i64(0))):
        with cgutils.for_range_slice(builder, i64(0), n_bytes, i64(_CACHE_LINE), intp=i64) as (off, _):
            _emit_prefetch(builder, builder.gep(start, [off]))
        _emit_prefetch(builder, builder.gep(start, [builder.sub(n_bytes, i64(1))]))


def _data_pointer(context, builder, aryty, ary):
    i8p = ir.IntType(8).as_pointer()
    return builder.bitcast(context.make_array(aryty)(context, builder, ary).data, i8p)


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to fetch ``arr[idx]`` into cache (no effect on results). This and the
    row and span variants below are lowered straight to LLVM (``llvm.prefetch``), so they
    cost no call, view or bounds logic in the per-sample loops."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ary, ind = args
        aryty = signature.args[0]
        ptr = cgutils.get_item_pointer(context, builder, aryty, context.make_array(aryty)(context, builder, ary), [ind])
        _emit_prefetch(builder, builder.bitcast(ptr, ir.IntType(8).as_pointer()))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _prefetch_row(typingctx, X, i):
    """Prefetch row ``i`` (non-negative) of the C-contiguous 2-D array ``X``, every line."""
    sig = types.void(X, i)

    def codegen(context, builder, signature, args):
        Xv, iv = args
        Xty = signature.args[0]
        if Xty.layout != "C":  # rows are not contiguous: no hint
            return context.get_dummy_value()
        arr = context.make_array(Xty)(context, builder, Xv)
        i64 = ir.IntType(64)
        row_bytes = builder.mul(builder.extract_value(arr.shape, 1), i64(context.get_abi_sizeof(
            context.get_data_type(Xty.dtype))))
        start = builder.gep(_data_pointer(context, builder, Xty, Xv),
                            [builder.mul(context.cast(builder, iv, signature.args[1], types.int64), row_bytes)])
        _emit_prefetch_bytes(builder, start, row_bytes)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _prefetch_span(typingctx, arr, lo, hi):
    """Prefetch ``arr[lo:hi]`` (a contiguous 1-D array, ``0 <= lo``), every line."""
    sig = types.void(arr, lo, hi)

    def codegen(context, builder, signature, args):
        av, lov, hiv = args
        aty = signature.args[0]
        if aty.layout != "C":
            return context.get_dummy_value()
        size = context.get_abi_sizeof(context.get_data_type(aty.dtype))
        i64 = ir.IntType(64)
        lo64 = context.cast(builder, lov, signature.args[1], types.int64)
        hi64 = context.cast(builder, hiv, signature.args[2], types.int64)
        start = builder.gep(_data_pointer(context, builder, aty, av), [builder.mul(lo64, i64(size))])
        _emit_prefetch_bytes(builder, start, builder.mul(builder.sub(hi64, lo64), i64(size)))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _borrowed(typingctx, *arrays):
    """Views of ``arrays`` (same data, shapes and strides) that Numba does not reference-count,
    as a tuple: ``X, y = _borrowed(X, y)``.

    Numba increments and decrements the reference count of every array argument of every
    compiled call it makes, and of every array passed to a helper inlined with
    ``inline="always"``: atomic operations on the array's shared counter, which its
    refcount pruner does not remove inside the kernels' loops (per step they cost as much
    as a per-sample momentum update, and threads of a parallel loop contend for the same
    counter). A view whose ``meminfo`` is NULL turns each of them into a test and a return.
    The kernels take such views of their arguments on entry: safe because the views do
    not outlive the call, during which the caller holds the arrays."""
    arrays = arrays[0] if len(arrays) == 1 and isinstance(arrays[0], types.StarArgTuple) else arrays
    if not all(isinstance(a, types.Array) for a in arrays):
        return None
    sig = types.Tuple(tuple(arrays))(types.StarArgTuple(tuple(arrays)))

    def codegen(context, builder, signature, args):
        [packed] = args
        views = []
        for k, aryty in enumerate(signature.return_type.types):
            src = context.make_array(aryty)(context, builder, builder.extract_value(packed, k))
            out = context.make_array(aryty)(context, builder)
            populate_array(out, data=src.data, shape=src.shape, strides=src.strides, itemsize=src.itemsize,
                           meminfo=None)
            views.append(out._getvalue())
        return context.make_tuple(builder, signature.return_type, views)

    return sig, codegen


@intrinsic
def _u(typingctx, index):
    """A non-negative array index as unsigned: Numba then skips the negative-index
    wraparound it otherwise adds to every access (a compare and a select per element in the
    sparse gather loops). An intrinsic, not an inlined function: the rules call it at every
    array access, and inlining a function costs Numba a copy of its IR at each call (56 of
    them in a first mini-batch fit)."""
    if not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], types.uint64)

    return types.uint64(index), codegen


_rules._at = _u  # the rules' loop index (see _rules._at and _compile_rules)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _prefetch_csr_ahead(data, indices, indptr, order, j, n_steps):
    """Prefetch, at step ``j`` of a shuffled CSR epoch, the row pointers of the sample
    ``2 * PREFETCH_AHEAD`` ahead and the values and column indices of the row
    ``PREFETCH_AHEAD`` ahead: both are cache misses, and an unprefetched ``indptr`` read
    stalls the row prefetch that needs it (measured: half of the per-sample epoch)."""
    if j + 2 * PREFETCH_AHEAD < n_steps:
        _prefetch(indptr, order[j + 2 * PREFETCH_AHEAD])
    if j + PREFETCH_AHEAD < n_steps:
        q = order[j + PREFETCH_AHEAD]
        _prefetch_span(data, indptr[q], indptr[q + 1])
        _prefetch_span(indices, indptr[q], indptr[q + 1])


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def learning_rate(codes, hp, t):
    """The schedule of :mod:`fastgd.schedules` at step clock ``t`` / epoch ``hp[H_EPOCH]``."""
    return _rules.learning_rate(codes[_C_SCHED], codes[_C_UNIT], float(t), hp)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _loss_1(loss_code, m, yi, hp):
    """Loss and its derivative for one output from scalars (no arrays, so nothing for Numba
    to reference-count in a hot loop), in double precision."""
    return _rules.loss_1(loss_code, float(m), float(yi), hp)


# the loss rule inlined where the single-output loops call it per sample (dense mini-batch and
# plain SGD, CSR running scale, Hogwild): no call per sample in these hot loops
_loss_1_inline = njit(cache=True, nogil=True, error_model="numpy", inline="always")(_rules.loss_1.py_func)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def sample_loss(loss_code, z, y, i, dz, K, hp):
    """Loss of one sample from its margins ``z``; writes d loss / d z into ``dz``."""
    if loss_code == _LOSS_SQUARED:
        total = 0.0
        for k in range(K):
            value, dz[k] = _loss_1(loss_code, z[k], y[i, k], hp)
            total += value
        return total
    if loss_code != C.LOSS_SOFTMAX:
        value, dz[0] = _loss_1(loss_code, z[0], y[i, 0], hp)
        return value
    return _rules.softmax_loss(z, dz, K, int(y[i, 0]))


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _flat(coef, grad, state):
    """Flat views of the parameters ``(p + 1, K)``, their gradient, and the optimizer state
    ``(n_slots, p + 1, K)``, as :func:`apply_step` takes them."""
    n = coef.shape[0] * coef.shape[1]
    return coef.reshape(n), grad.reshape(n), state.reshape(state.shape[0] * n)


@njit(cache=True, nogil=True, error_model="numpy")
def apply_step(w, g, st, K, t, codes, hp, inv_b, mu_prod):
    """One optimizer step of every parameter (:func:`fastgd._backends._rules.apply_step`)
    from ``g``, a sum over the batch scaled by ``inv_b``. The parameters, gradient and
    optimizer state come flat (see :func:`_flat`), made once per epoch: a reshape per step is
    a run-time call. Advances ``t``; returns the learning rate used and NAdam's momentum
    product after the step."""
    lr, mu_prod = _rules.apply_step(codes[_C_OPT], codes[_C_NEST], codes[_C_AMS], codes[_C_SCHED], codes[_C_UNIT],
                                    w, g, st, w.shape[0], K, float(t[0]), hp, inv_b, mu_prod)
    t[0] += 1
    return lr, mu_prod


@njit(cache=True, nogil=True, error_model="numpy")
def apply_step_rows(w, g, st, K, t, codes, hp, inv_b, rows, n_rows, mu_prod):
    """:func:`apply_step` on the rows ``rows[:n_rows]`` only
    (:func:`fastgd._backends._rules.apply_step_rows`)."""
    lr, mu_prod = _rules.apply_step_rows(codes[_C_OPT], codes[_C_NEST], codes[_C_AMS], codes[_C_SCHED],
                                         codes[_C_UNIT], w, g, st, w.shape[0], K, rows, n_rows, float(t[0]), hp,
                                         inv_b, mu_prod)
    t[0] += 1
    return lr, mu_prod


def _mu_product(codes, hp, t):
    """NAdam's momentum product at the start of an epoch (1 for other optimizers), which the
    entry points pass to the kernels. The rule runs in the interpreter (its Python source,
    as the Cython engine compiles it): once per epoch, and not worth its compile time in a
    first fit."""
    return _rules.nadam_mu_product.py_func(int(codes[_C_OPT]), float(t[0]), hp)


@njit(cache=True, nogil=True, error_model="numpy")
def _all_finite(a):
    for v in a.flat:
        if not np.isfinite(v):
            return False
    return True


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _margins_dense(xi, w, K, z):
    """Margins of row ``xi`` under the flat parameters ``w`` ((p + 1) * K, intercept last)."""
    p = xi.shape[0]
    for k in range(K):
        z[k] = w[p * K + k]
    for f in range(p):
        xf = xi[f]
        for k in range(K):
            z[k] += xf * w[f * K + k]


# Reassociation lets LLVM vectorise the dot-product reduction (results move in the last
# bits only; parity with the reference is checked at rtol 1e-10). No "nnan"/"ninf": the
# non-finite checks must survive.
_FAST = {"reassoc", "contract"}


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _accumulate_dense(X, y, sw, i, w, g, K, loss_code, z, dz, assign, hp):
    """Add (or, if ``assign``, write) sample ``i``'s weighted gradient into the flat gradient
    ``g``; return its weighted loss. The multi-output case (one output is
    :func:`_add_gradients_1`). ``w`` and ``g`` are flat views made once per epoch: a reshape
    per sample costs a run-time call in Numba (measured 3x on mini-batch epochs)."""
    p = X.shape[1]
    xi = X[i]
    _margins_dense(xi, w, K, z)
    loss = sample_loss(loss_code, z, y, i, dz, K, hp)
    s = sw[i]
    for k in range(K):
        dz[k] *= s
    for f in range(p):
        xf = xi[f]
        for k in range(K):
            if assign:
                g[f * K + k] = xf * dz[k]
            else:
                g[f * K + k] += xf * dz[k]
    for k in range(K):
        if assign:
            g[p * K + k] = dz[k]
        else:
            g[p * K + k] += dz[k]
    return s * loss


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _margin_1(X, order, j, stop, w):
    """Step ``j`` of a single-output dense loop: prefetch the row ``PREFETCH_AHEAD`` samples
    ahead (while before ``order[stop]``), and return the sample's row index (unsigned) and
    margin ``x . w[:p] + w[p]``."""
    if j + PREFETCH_AHEAD < stop:
        _prefetch_row(X, order[j + PREFETCH_AHEAD])
    i = _u(order[j])
    p = X.shape[1]
    acc = w[p]
    for f in range(p):
        acc += X[i, f] * w[f]
    return i, acc


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _add_gradients_1(X, y, sw, order, lo, hi, stop, w, g, loss_code, hp):
    """Add the weighted single-output gradients of the samples ``order[lo:hi]`` into the flat
    ``g``; return their weighted loss sum. Rows are prefetched ahead up to ``order[stop]``.
    (The loop of one batch or one chunk, free of per-sample calls and views.)"""
    p = X.shape[1]
    dt = g.dtype.type
    total = 0.0
    for j in range(lo, hi):
        i, m = _margin_1(X, order, j, stop, w)
        loss, d = _loss_1_inline(loss_code, float(m), float(y[i, 0]), hp)
        s = sw[i]
        d = dt(d * s)
        total += s * loss
        for f in range(p):
            g[f] += X[i, f] * d
        g[p] += d
    return total


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _epoch_dense_plain_sgd(X, y, sw, order, coef, t, codes, hp, z, dz):
    """Per-sample plain SGD with one output: the margin, then the shared rules' fused
    ``plain_sgd_sample``, ``w <- (1 - lr * l2) * w - lr * s * dloss * x`` (then the L1 step)."""
    (X, y, sw, order, coef, t, codes, hp, z, dz) = _borrowed(X, y, sw, order, coef, t, codes, hp, z, dz)
    p = X.shape[1]
    w = coef.reshape(p + 1)
    x = X.reshape(X.shape[0] * p)  # (the rule indexes rows flat, unsigned: see _u)
    pu = _u(p)
    dt = w.dtype.type
    loss_code = codes[_C_LOSS]
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    loss_sum = 0.0
    n_steps = order.shape[0]
    step = t[0]
    for j in range(n_steps):
        i, m = _margin_1(X, order, j, n_steps, w)
        loss, d = _loss_1_inline(loss_code, float(m), float(y[i, 0]), hp)
        loss *= sw[i]
        loss_sum += loss
        if not np.isfinite(loss):
            t[0] = step
            return _NONFINITE, loss_sum
        lr = learning_rate(codes, hp, step)
        _rules.plain_sgd_sample(w, x, i * pu, pu, dt(1.0 - lr * l2), dt(lr * d * sw[i]), lr * l1)
        step += 1
    t[0] = step
    return _OK, loss_sum


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _epoch_dense_batches(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work, mu_prod, K):
    """The batch loop of :func:`epoch_dense`. Inlined twice, with ``K`` the literal 1 and
    with ``K`` read at run time: the single-output loop nest then compiles without the
    multi-output branches (measured 1.5x faster on mini-batch epochs)."""
    (X, y, sw, order, coef, state, t, codes, hp, grad, work) = _borrowed(
        X, y, sw, order, coef, state, t, codes, hp, grad, work)
    n_steps = order.shape[0]
    loss_code = codes[_C_LOSS]
    z = work[0]
    dz = work[1]
    w, g, st = _flat(coef, grad, state)
    loss_sum = 0.0
    p = X.shape[1]
    for start in range(0, n_steps, batch_size):
        end = min(start + batch_size, n_steps)
        if K == 1:
            for q in range(p + 1):
                g[q] = 0.0
            batch_loss = _add_gradients_1(X, y, sw, order, start, end, n_steps, w, g, loss_code, hp)
        elif end - start == 1:
            if start + PREFETCH_AHEAD < n_steps:
                _prefetch_row(X, order[start + PREFETCH_AHEAD])
            batch_loss = _accumulate_dense(X, y, sw, order[start], w, g, K, loss_code, z, dz, True, hp)
        else:
            g[:] = 0.0
            batch_loss = 0.0
            for j in range(start, end):
                if j + PREFETCH_AHEAD < n_steps:
                    _prefetch_row(X, order[j + PREFETCH_AHEAD])
                batch_loss += _accumulate_dense(X, y, sw, order[j], w, g, K, loss_code, z, dz, False, hp)
        loss_sum += batch_loss
        if not np.isfinite(batch_loss):
            return _NONFINITE, loss_sum
        _, mu_prod = apply_step(w, g, st, K, t, codes, hp, 1.0 / (end - start), mu_prod)
    return _OK, loss_sum


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _epoch_dense_single(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work, mu_prod):
    return _epoch_dense_batches(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work, mu_prod, 1)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _epoch_dense_multi(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work, mu_prod):
    return _epoch_dense_batches(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work, mu_prod,
                                coef.shape[1])


def _entry_check(n_rows, n_features, y, sw, coef, state, t, codes, hp, batch_size, grad, work):
    """The entry points' check, once per call: buffer shapes (ValueError) and codes (the
    error status, or STATUS_OK)."""
    C.check_buffers(n_rows, n_features, y, sw, coef, state, t, codes, hp, batch_size, grad, work)
    return _check_codes(codes)


def _check_codes(codes):
    """The rule :func:`fastgd._backends._rules.check_codes` run by the interpreter (its Python
    source, as the Cython engine compiles it): a few comparisons once per call, not worth
    their compile time in a first fit."""
    return _rules.check_codes.py_func(int(codes[_C_LOSS]), int(codes[_C_OPT]), int(codes[_C_SCHED]),
                                      int(codes[_C_UNIT]))


def epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work):
    """One epoch on dense ``X`` (the contract of :mod:`fastgd._contract`).

    A Python-level choice, once per epoch, between separately compiled kernels (the fused
    per-sample plain-SGD loop, the single-output and the multi-output batch loops): a fit
    compiles only the kernel it uses, which keeps the first (cold-cache) fit short."""
    status = _entry_check(X.shape[0], X.shape[1], y, sw, coef, state, t, codes, hp, batch_size, grad, work)
    if status != _OK:
        return status, 0.0
    if C.plain_sgd_per_sample(codes, hp, batch_size, coef.shape[1]):
        status, loss_sum = _epoch_dense_plain_sgd(X, y, sw, order, coef, t, codes, hp, work[0], work[1])
    elif coef.shape[1] == 1:
        status, loss_sum = _epoch_dense_single(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work,
                                               _mu_product(codes, hp, t))
    else:
        status, loss_sum = _epoch_dense_multi(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work,
                                              _mu_product(codes, hp, t))
    if status == _OK and not _all_finite(coef):
        status = _NONFINITE
    return status, loss_sum


# --- multi-core gradient accumulation ---------------------------------------------------
# A large batch is cut into N_CHUNKS fixed slices; each slice's gradient is summed into its
# own buffer (in parallel), then the buffers are added in slice order. The result depends on
# neither the number of threads nor their scheduling: fits are reproducible bit for bit.
# Numba's prange gives each thread one fixed, equal share of the iterations (its
# parallel_chunksize setting did not change that under the omp or workqueue layers, measured
# with Numba 0.68), so the whole loop would wait for a thread whose core is shared with other
# work (another library's spinning threads). The slices are handed out from a queue instead:
# every prange iteration claims the next unclaimed slice (an atomic counter) until none is
# left, so each thread's first iteration works alongside the others until the queue is empty
# and a slow thread simply takes fewer slices. Slices claimed
# one after another run at the same time, so their buffers are spread apart (_chunk_slot):
# neighbouring buffers share a cache line at their boundary.
N_CHUNKS = C.N_CHUNKS


@intrinsic
def _claim_next(typingctx, counter):
    """Atomically ``counter[0] += 1``; returns the value before (the slice claimed)."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None
    sig = types.int64(counter)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", arr.data, ir.Constant(ir.IntType(64), 1), "monotonic")

    return sig, codegen


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _chunk_slot(c):
    """The buffer of slice ``c``: its index with the bits reversed (N_CHUNKS is a power of
    two), so that slices claimed consecutively write buffers at least two apart."""
    slot = 0
    width = 1
    while width < N_CHUNKS:
        slot = (slot << 1) | (c & 1)
        c >>= 1
        width <<= 1
    return slot


@njit(cache=True, nogil=True, error_model="numpy", parallel=True, fastmath=_FAST)
def _chunked_gradient(X, y, sw, order, start, end, coef, grad, partial, pwork, losses, loss_code, hp):
    """``grad`` = sum over ``order[start:end]`` of the weighted sample gradients; returns the
    weighted loss sum. ``partial`` (N_CHUNKS, p + 1, K), ``pwork`` (N_CHUNKS, WORK_ROWS, K)
    and ``losses`` (N_CHUNKS,) are scratch."""
    (X, y, sw, order, coef, grad, partial, pwork, losses, hp) = _borrowed(
        X, y, sw, order, coef, grad, partial, pwork, losses, hp)
    b = end - start
    K = coef.shape[1]
    w = coef.reshape(coef.size)
    claimed = np.zeros(1, dtype=np.int64)  # the queue of slices (parfors allocate per launch too)
    for _ in prange(N_CHUNKS):  # each thread's first iteration empties the queue with the others
        c = _claim_next(claimed)
        while c < N_CHUNKS:
            lo = start + (b * c) // N_CHUNKS
            hi = start + (b * (c + 1)) // N_CHUNKS
            slot = _chunk_slot(c)
            part = partial[slot].reshape(coef.size)
            part[:] = 0.0
            if K == 1:
                acc = _add_gradients_1(X, y, sw, order, lo, hi, hi, w, part, loss_code, hp)
            else:
                z = pwork[slot, 0]
                dz = pwork[slot, 1]
                acc = 0.0
                for j in range(lo, hi):
                    if j + PREFETCH_AHEAD < hi:
                        _prefetch_row(X, order[j + PREFETCH_AHEAD])
                    acc += _accumulate_dense(X, y, sw, order[j], w, part, K, loss_code, z, dz, False, hp)
            losses[c] = acc
            c = _claim_next(claimed)
    total = 0.0
    for c in range(N_CHUNKS):
        total += losses[c]
    g = grad.reshape(grad.size)
    for q in range(g.size):
        acc = partial[0].flat[q]  # slice 0's buffer is slot 0
        for c in range(1, N_CHUNKS):
            acc += partial[_chunk_slot(c)].flat[q]
        g[q] = acc
    return total


@intrinsic
def _sleep_us(typingctx, us):
    """Sleep ``us`` microseconds (the C library's ``usleep``; ``Sleep`` in milliseconds on
    Windows), for the scheduling diagnostic below."""
    sig = types.void(us)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        n = builder.trunc(context.cast(builder, args[0], signature.args[0], types.int64), i32)
        if sys.platform == "win32":
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]), "Sleep")
            builder.call(fn, [builder.udiv(builder.add(n, i32(999)), i32(1000))])
        else:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]), "usleep")
            builder.call(fn, [n])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, parallel=True)
def _chunk_threads_kernel(delays_us, ids):
    claimed = np.zeros(1, dtype=np.int64)
    for _ in prange(N_CHUNKS):
        c = _claim_next(claimed)
        while c < N_CHUNKS:
            if delays_us[c] > 0:
                _sleep_us(delays_us[c])
            ids[c] = get_thread_id()
            c = _claim_next(claimed)


def _chunk_threads(delays_us=None):
    """``(True, thread ids)``: the thread that ran each of the N_CHUNKS slices of a parallel
    loop handed out as the gradient's (a diagnostic for the thread-count tests). Slice ``c``
    first sleeps ``delays_us[c]`` microseconds (none by default): a stand-in for work, or for
    a thread slowed by other work on its core."""
    delays = np.zeros(N_CHUNKS, dtype=np.int64) if delays_us is None else np.asarray(delays_us, dtype=np.int64)
    ids = np.zeros(N_CHUNKS, dtype=np.int64)
    _chunk_threads_kernel(delays, ids)
    return True, ids.tolist()


_THREADS_STARTED_IN = None  # the process (pid) in which _start_threads ran


def _start_threads():
    """Start Numba's threading layer in this process, once. Calling a parallel kernel from
    Python starts it; ``_epoch_dense_chunked`` is not parallel itself but runs the parallel
    gradient inside, and when it came from the on-disk cache in a process where no parallel
    kernel had run yet, its parallel region called address 0 (a segfault of the first
    full-batch fit of a new process; found by bench.compare's contention section)."""
    global _THREADS_STARTED_IN
    if _THREADS_STARTED_IN != os.getpid():
        _chunk_threads_kernel(np.zeros(N_CHUNKS, dtype=np.int64), np.zeros(N_CHUNKS, dtype=np.int64))
        _THREADS_STARTED_IN = os.getpid()


def epoch_dense_chunked(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work,
                        partial, pwork, losses):
    """:func:`epoch_dense` for large batches: each batch gradient accumulated on all cores by
    :func:`_chunked_gradient` (same mathematics, summed in a fixed chunk order)."""
    _start_threads()
    status = _entry_check(X.shape[0], X.shape[1], y, sw, coef, state, t, codes, hp, batch_size, grad, work)
    if partial.shape != (N_CHUNKS,) + coef.shape:
        raise ValueError(f"partial has shape {partial.shape}; need {(N_CHUNKS,) + coef.shape}")
    if pwork.shape[0] != N_CHUNKS or pwork.shape[1] < C.WORK_ROWS or pwork.shape[2] < coef.shape[1]:
        raise ValueError(f"pwork has shape {pwork.shape}; need ({N_CHUNKS}, {C.WORK_ROWS}, {coef.shape[1]})")
    if losses.shape[0] < N_CHUNKS:
        raise ValueError(f"losses has {losses.shape[0]} entries; need {N_CHUNKS}")
    if status != _OK:
        return status, 0.0
    return _epoch_dense_chunked(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work, partial,
                                pwork, losses, _mu_product(codes, hp, t))


@njit(cache=True, nogil=True, error_model="numpy")
def _epoch_dense_chunked(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work, partial, pwork,
                         losses, mu_prod):
    (X, y, sw, order, coef, state, t, codes, hp, grad, work, partial, pwork, losses) = _borrowed(
        X, y, sw, order, coef, state, t, codes, hp, grad, work, partial, pwork, losses)
    n_steps = order.shape[0]
    loss_code = codes[_C_LOSS]
    loss_sum = 0.0
    K = coef.shape[1]
    w, g, st = _flat(coef, grad, state)
    for start in range(0, n_steps, batch_size):
        end = min(start + batch_size, n_steps)
        batch_loss = _chunked_gradient(X, y, sw, order, start, end, coef, grad, partial, pwork, losses, loss_code,
                                       hp)
        loss_sum += batch_loss
        if not np.isfinite(batch_loss):
            return _NONFINITE, loss_sum
        _, mu_prod = apply_step(w, g, st, K, t, codes, hp, 1.0 / (end - start), mu_prod)
    if not _all_finite(coef):
        return _NONFINITE, loss_sum
    return _OK, loss_sum


def full_gradient_dense(X, y, sw, coef, codes, grad, work, hp=None):
    """Mean over all samples of ``sw_i * grad loss_i`` into ``grad`` (all cores); returns the
    weighted loss sum. ``hp`` carries the loss's parameter (``H_LOSS_PARAM``), if any."""
    K = coef.shape[1]
    partial = np.empty((N_CHUNKS,) + coef.shape, dtype=coef.dtype)
    pwork = np.empty((N_CHUNKS, C.WORK_ROWS, K), dtype=coef.dtype)
    losses = np.empty(N_CHUNKS)
    order = np.arange(X.shape[0], dtype=np.int64)
    if not 0 <= codes[_C_LOSS] < C.N_LOSSES:
        raise ValueError(f"unknown loss code {codes[_C_LOSS]}")
    hp = np.zeros(C.N_HP) if hp is None else hp
    total = _chunked_gradient(X, y, sw, order, 0, X.shape[0], coef, grad, partial, pwork, losses, codes[_C_LOSS],
                              hp)
    grad /= grad.dtype.type(X.shape[0])
    return total


_SPARSE_DENSE, _SPARSE_LAZY_EXACT = C.SPARSE_DENSE, C.SPARSE_LAZY_EXACT
_COUNT_UPDATES, _COUNT_CATCHUPS = C.COUNT_UPDATES, C.COUNT_CATCHUPS
_D_A, _D_B, _D_STAMP, _D_SQ = C.D_A, C.D_B, C.D_STAMP, C.D_SQ
_RESCALE_BELOW = 1e-100  # bring every coordinate up to date before the shrink map underflows


@njit(cache=True, nogil=True, error_model="numpy")
def _catch_up_all(coef, state, A, B, T, lazy_work, rmsprop, rho, counters):
    p, K = coef.shape[0] - 1, coef.shape[1]
    w, st, lazy = coef.reshape(coef.size), state.reshape(state.size), lazy_work.reshape(lazy_work.size)
    for c in range(p):
        counters[_COUNT_CATCHUPS] += _rules.catch_up(w, st, c, K, A, B, T, lazy, rmsprop, rho)


@njit(cache=True, nogil=True, error_model="numpy")
def _advance_map(coef, state, A, B, T, a, b, lazy_work, mark, stamp, rmsprop, rho, counters):
    """After the step from clock ``T`` (its touched coordinates, ``mark == stamp``, already
    stepped in full), fold the step's shrink map ``|w| <- max(a |w| - b, 0)`` into the
    cumulative map ``(A, B)`` of the untouched ones, and return the new ``(A, B)``. The
    caller records ``(T + 1, A, B)`` as the touched coordinates' snapshot.

    Two cases bring every coordinate up to date instead: a non-positive ``a`` (``lr * l2 >=
    1``: the map flips signs and cannot be composed) and a cumulative ``A`` about to underflow.
    """
    p = coef.shape[0] - 1
    if a <= 0.0:
        _catch_up_all(coef, state, A, B, T, lazy_work, rmsprop, rho, counters)
        for c in range(p):
            if mark[c] != stamp:
                for k in range(coef.shape[1]):
                    coef[c, k] = _rules.lazy_shrink(coef[c, k] * a, 1.0, b)
        A, B = 1.0, 0.0
    else:
        A *= a
        B = a * B + b
        if A >= _RESCALE_BELOW:
            return A, B
        K = coef.shape[1]
        w, st, lazy = coef.reshape(coef.size), state.reshape(state.size), lazy_work.reshape(lazy_work.size)
        for c in range(p):
            if mark[c] != stamp:
                counters[_COUNT_CATCHUPS] += _rules.catch_up(w, st, c, K, A, B, T + 1.0, lazy, rmsprop, rho)
        A, B = 1.0, 0.0
    for c in range(p):
        lazy_work[c, 0] = T + 1.0
        lazy_work[c, 1] = 1.0
        lazy_work[c, 2] = 0.0
    return A, B


_SCALE_BELOW = 1e-9  # fold the running scale into the weights before it loses precision


@njit(cache=True, nogil=True, error_model="numpy")
def _scale_all(v, p, f):
    """Multiply ``v[:p]`` by ``f`` (folding a running scale); returns their new sum of squares."""
    sq = 0.0
    for c in range(p):
        v[c] *= f
        sq += float(v[c]) * float(v[c])
    return sq


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _scaled_step_row(v, data, indices, lo, hi, step, track):
    """Step the row's coordinates ``v[c] -= step * x_c``; with ``track``, returns the change of
    their sum of squares in two partial sums, even and odd positions (Cython's
    ``_scaled_step_row``, the same order of additions)."""
    d0 = 0.0
    d1 = 0.0
    if not track:  # (the sum is not kept: the epoch folds the scale at its end)
        for ptr in range(lo, hi):
            v[_u(indices[ptr])] -= step * data[ptr]
        return 0.0
    ptr = lo
    while ptr + _U1 < hi:
        c = _u(indices[ptr])
        old = float(v[c])
        v[c] -= step * data[ptr]
        new = float(v[c])
        d0 += new * new - old * old
        c = _u(indices[ptr + _U1])
        old = float(v[c])
        v[c] -= step * data[ptr + _U1]
        new = float(v[c])
        d1 += new * new - old * old
        ptr += _U2
    if ptr < hi:
        c = _u(indices[ptr])
        old = float(v[c])
        v[c] -= step * data[ptr]
        new = float(v[c])
        d0 += new * new - old * old
    return d0 + d1


@njit(cache=True, nogil=True, error_model="numpy")
def _row_finite(v, indices, lo, hi):
    """Whether the row's weights are all finite (asked only when the row's change of the sum
    of squares is not: that alone may be an overflow of finite squares)."""
    for ptr in range(lo, hi):
        if not np.isfinite(v[_u(indices[ptr])]):
            return False
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def _epoch_csr_scaled_sgd(data, indices, indptr, y, sw, order, coef, t, codes, hp, z, dz, counters, running,
                          keep_running):
    """Per-sample plain SGD with L2 and no L1, one output, on CSR rows: the closed form of the
    untouched coordinates' shrinking is a running product, kept as one scalar. During the
    epoch the weights are ``S * v`` (``v`` stored in ``coef``, the intercept unscaled); a step
    multiplies ``S`` by ``a = 1 - lr * l2`` and moves only the row's coordinates,
    ``v_c -= lr * s * dloss * x_c / S``: the same model as the dense step, O(nnz) per step and
    no per-coordinate bookkeeping (the working set is the weights alone). ``S`` is folded
    into ``v`` when it falls below 1e-9, at a non-positive ``a``, and at the end of the epoch.

    With ``keep_running`` the epoch starts from ``running = (S, sum of squares of v)`` and
    leaves its own there instead of the end-of-epoch fold, the sum of squares kept up to date
    from the stepped coordinates (the penalty's value at O(nnz)); the weights' finiteness is
    then followed through the stepped values, not checked by a pass over all of them."""
    (data, indices, indptr, y, sw, order, coef, t, codes, hp, z, dz, counters, running) = _borrowed(
        data, indices, indptr, y, sw, order, coef, t, codes, hp, z, dz, counters, running)
    p = coef.shape[0] - 1
    v = coef.reshape(p + 1)
    dt = v.dtype.type
    loss_code = codes[_C_LOSS]
    l2 = hp[_H_L2]
    S = running[0] if keep_running else 1.0
    sq = running[1] if keep_running else 0.0
    probe = 0.0  # set to NaN by the first row that leaves a non-finite weight
    loss_sum = 0.0
    n_steps = order.shape[0]
    step_t = t[0]  # the step clock and the update count, kept in registers
    updates = 0
    half = PREFETCH_AHEAD // 2
    prefetch_w = p * coef.itemsize >= WEIGHT_PREFETCH_MIN_BYTES
    for j in range(n_steps):
        _prefetch_csr_ahead(data, indices, indptr, order, j, n_steps)
        if prefetch_w and j + half < n_steps:
            # the weights of the row half as far ahead (its column indices were asked for
            # PREFETCH_AHEAD // 2 samples ago): on wide hashed features each is a cache miss
            q = _u(order[j + half])
            for ptr in range(_u(indptr[q]), _u(indptr[q + _U1])):
                _prefetch(v, _u(indices[ptr]))
        # indices are unsigned (_u): Numba adds no negative-index wraparound to each access
        i = _u(order[j])
        lo = _u(indptr[i])
        hi = _u(indptr[i + _U1])
        # two accumulators: the gathered products are independent, so two add chains hide
        # the floating-point add latency
        acc0 = dt(0.0)
        acc1 = dt(0.0)
        ptr = lo
        while ptr + _U1 < hi:
            acc0 += data[ptr] * v[_u(indices[ptr])]
            acc1 += data[ptr + _U1] * v[_u(indices[ptr + _U1])]
            ptr += _U2
        if ptr < hi:
            acc0 += data[ptr] * v[_u(indices[ptr])]
        loss, d = _loss_1_inline(loss_code, float(S * (acc0 + acc1) + v[p]), float(y[i, 0]), hp)
        loss *= sw[i]
        loss_sum += loss
        if not np.isfinite(loss):
            t[0] = step_t
            counters[_COUNT_UPDATES] += updates
            running[0] = S
            running[1] = sq
            return _NONFINITE, loss_sum
        lr = learning_rate(codes, hp, step_t)
        cg = lr * d * sw[i]
        a = 1.0 - lr * l2
        if a <= 0.0:  # lr * l2 >= 1 flips signs: apply the shrink to every weight now
            sq = _scale_all(v, p, dt(S * a))
            counters[_COUNT_CATCHUPS] += p
            S = 1.0
        else:
            S *= a
        d_sq = _scaled_step_row(v, data, indices, lo, hi, dt(cg / S), keep_running)
        if not np.isfinite(d_sq) and not _row_finite(v, indices, lo, hi):
            probe = np.nan
        sq += d_sq
        v[p] -= dt(cg)
        updates += np.int64(hi - lo) + 1
        if S < _SCALE_BELOW:
            sq = _scale_all(v, p, dt(S))
            counters[_COUNT_CATCHUPS] += p
            S = 1.0
        step_t += 1
    t[0] = step_t
    counters[_COUNT_UPDATES] += updates
    if keep_running:
        running[0] = S
        running[1] = sq
        return (_OK if probe == 0.0 and np.isfinite(v[p]) else _NONFINITE), loss_sum
    if not _all_finite(coef):  # before the fold: a diverged epoch leaves untouched weights as they were
        return _NONFINITE, loss_sum
    if S != 1.0:
        _scale_all(v, p, dt(S))
        counters[_COUNT_CATCHUPS] += p
    return _OK, loss_sum


@njit(cache=True, nogil=True, error_model="numpy")
def _epoch_csr_adagrad(data, indices, indptr, y, sw, order, coef, state, t, codes, hp, counters):
    """Per-sample AdaGrad with one output and no penalty or clipping, on CSR rows: a
    coordinate the row does not touch has a zero gradient, so neither it nor its accumulator
    moves, and a step reads and writes only the row's weights and accumulators (the state's
    sum slot), with the rule of the shared ``_adagrad_span``. No buffer, no per-epoch pass
    over the coordinates: the weights' finiteness is followed through the stepped values."""
    (data, indices, indptr, y, sw, order, coef, state, t, codes, hp, counters) = _borrowed(
        data, indices, indptr, y, sw, order, coef, state, t, codes, hp, counters)
    p = coef.shape[0] - 1
    w = coef.reshape(p + 1)
    acc_sq = state[_S_SUM].reshape(p + 1)
    dt = w.dtype.type
    loss_code = codes[_C_LOSS]
    eps = hp[_H_EPS]
    probe = 0.0  # stays 0 while every stepped value is finite (inf - inf is NaN)
    loss_sum = 0.0
    n_steps = order.shape[0]
    step_t = t[0]
    updates = 0
    half = PREFETCH_AHEAD // 2
    prefetch_w = p * coef.itemsize >= WEIGHT_PREFETCH_MIN_BYTES
    for j in range(n_steps):
        _prefetch_csr_ahead(data, indices, indptr, order, j, n_steps)
        if prefetch_w and j + half < n_steps:
            q = _u(order[j + half])
            for ptr in range(_u(indptr[q]), _u(indptr[q + _U1])):
                _prefetch(w, _u(indices[ptr]))
                _prefetch(acc_sq, _u(indices[ptr]))
        i = _u(order[j])
        lo = _u(indptr[i])
        hi = _u(indptr[i + _U1])
        acc0 = dt(0.0)
        acc1 = dt(0.0)
        ptr = lo
        while ptr + _U1 < hi:
            acc0 += data[ptr] * w[_u(indices[ptr])]
            acc1 += data[ptr + _U1] * w[_u(indices[ptr + _U1])]
            ptr += _U2
        if ptr < hi:
            acc0 += data[ptr] * w[_u(indices[ptr])]
        loss, dloss = _loss_1(loss_code, dt((acc0 + acc1) + w[p]), y[i, 0], hp)
        loss *= sw[i]
        loss_sum += loss
        if not np.isfinite(loss):
            t[0] = step_t
            counters[_COUNT_UPDATES] += updates
            return _NONFINITE, loss_sum
        lr = learning_rate(codes, hp, step_t)
        d = dt(dloss) * sw[i]  # (rounded as the general kernel's gradient buffer holds it)
        for ptr in range(lo, hi):
            c = _u(indices[ptr])
            gq = float(data[ptr] * d)
            sq = float(acc_sq[c]) + gq * gq
            acc_sq[c] = sq
            new = float(w[c]) - lr * gq / (np.sqrt(sq) + eps)
            w[c] = new
            probe += new - new
        gq = float(d)
        sq = float(acc_sq[p]) + gq * gq
        acc_sq[p] = sq
        w[p] = float(w[p]) - lr * gq / (np.sqrt(sq) + eps)
        updates += np.int64(hi - lo) + 1
        step_t += 1
    t[0] = step_t
    counters[_COUNT_UPDATES] += updates
    finite = probe == 0.0 and np.isfinite(w[p]) and np.isfinite(acc_sq[p])
    return (_OK if finite else _NONFINITE), loss_sum


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _epoch_csr_plain_sgd(data, indices, indptr, y, sw, order, coef, state, t, codes, hp, z, dz, lazy_work,
                         mark, counters):
    """Per-sample plain SGD with one output on canonical CSR rows, exact and lazy: each
    coordinate of the row is caught up inside the dot product, then stepped in full (the
    same arithmetic as the dense path) with its snapshot recorded in the same pass."""
    (data, indices, indptr, y, sw, order, coef, state, t, codes, hp, z, dz, lazy_work, mark,
     counters) = _borrowed(
        data, indices, indptr, y, sw, order, coef, state, t, codes, hp, z, dz, lazy_work, mark,
        counters)
    p = coef.shape[0] - 1
    w = coef.reshape(p + 1)
    dt = w.dtype.type
    loss_code = codes[_C_LOSS]
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    A = 1.0
    B = 0.0
    loss_sum = 0.0
    n_steps = order.shape[0]
    for j in range(n_steps):
        _prefetch_csr_ahead(data, indices, indptr, order, j, n_steps)
        i = order[j]
        lo = indptr[i]
        hi = indptr[i + 1]
        T = float(t[0])
        acc = w[p]
        for ptr in range(lo, hi):
            c = indices[ptr]
            if lazy_work[c, 0] != T:
                ratio = A / lazy_work[c, 1]
                w[c] = _rules.lazy_shrink(w[c], ratio, B - ratio * lazy_work[c, 2])
            acc += data[ptr] * w[c]
        counters[_COUNT_CATCHUPS] += hi - lo
        z[0] = acc
        loss = sw[i] * sample_loss(loss_code, z, y, i, dz, 1, hp)
        loss_sum += loss
        if not np.isfinite(loss):
            return _NONFINITE, loss_sum
        lr = learning_rate(codes, hp, t[0])
        cg = dt(lr * dz[0] * sw[i])
        a = 1.0 - lr * l2
        b = lr * l1
        ad = dt(a)
        bd = dt(b)
        for ptr in range(lo, hi):
            c = indices[ptr]
            wc = ad * w[c] - cg * data[ptr]
            if b > 0:
                wc = dt(_rules.soft_threshold(wc, bd))
            w[c] = wc
        w[p] -= cg
        counters[_COUNT_UPDATES] += hi - lo + 1
        if a > 0.0 and A * a >= _RESCALE_BELOW:
            A *= a
            B = a * B + b
        else:  # rare: the row's coordinates were caught up to T (in the dot product) and
            # stepped; record that and mark them, so _advance_map neither catches them up again
            # nor applies this step's map to them twice.
            for ptr in range(lo, hi):
                c = indices[ptr]
                mark[c] = j + 1
                lazy_work[c, 0] = T
                lazy_work[c, 1] = A
                lazy_work[c, 2] = B
            A, B = _advance_map(coef, state, A, B, T, a, b, lazy_work, mark, j + 1, False, 0.0, counters)
        for ptr in range(lo, hi):
            c = indices[ptr]
            lazy_work[c, 0] = T + 1.0
            lazy_work[c, 1] = A
            lazy_work[c, 2] = B
        t[0] += 1
    if not _all_finite(coef):  # before the catch-up: a diverged epoch leaves untouched weights as they were
        return _NONFINITE, loss_sum
    _catch_up_all(coef, state, A, B, float(t[0]), lazy_work, False, 0.0, counters)
    return _OK, loss_sum


def epoch_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp,
              batch_size, grad, work, lazy_work, index_work, counters, running=None):
    """One epoch on CSR parts (the contract of :mod:`fastgd._contract`): the same mathematics
    as the dense epoch, at O(nnz) per step where :func:`fastgd._contract.sparse_mode` allows it. Rows must be
    canonical (no duplicate column in a row; the estimators ensure it). As for dense input,
    the per-sample plain-SGD kernels (L2 only: a running scale; with L1: per-coordinate
    shrink maps) and the general one are compiled separately. ``running``, for the
    running-scale kernel (``CSR_RUNNING_SCALE``): two float64, ``(S, sum of squares of
    coef[:-1])``; the weights are ``S * coef[:-1]`` on entry and on return, both values kept
    up to date at O(nnz). For the general kernel (``CSR_DEFERRED_CATCH_UP``): the deferred
    catch-up's state (fastgd._contract), with which per-sample plain SGD with L1 takes the
    general kernel too."""
    status = _entry_check(indptr.shape[0] - 1, n_features, y, sw, coef, state, t, codes, hp, batch_size, grad,
                          work)
    needs_lazy = C.csr_needs_lazy_buffers(codes, hp, batch_size, coef.shape[1])
    C.check_csr_buffers(data, indices, indptr, n_features, lazy_work, index_work, counters, needs_lazy)
    C.check_running_state(running, codes, hp, batch_size, coef.shape[1])
    if status != _OK:
        return status, 0.0
    if C.csr_adagrad_per_sample(codes, hp, batch_size, coef.shape[1]):
        status, loss_sum = _epoch_csr_adagrad(data, indices, indptr, y, sw, order, coef, state, t, codes, hp,
                                              counters)
    elif not needs_lazy:
        keep_running = running is not None
        status, loss_sum = _epoch_csr_scaled_sgd(data, indices, indptr, y, sw, order, coef, t, codes, hp,
                                                 work[0], work[1], counters,
                                                 running if keep_running else np.ones(2), keep_running)
    elif C.csr_fused_plain_sgd(codes, hp, batch_size, coef.shape[1], running is not None):
        _start_lazy_epoch(coef, t, lazy_work, index_work[0])
        status, loss_sum = _epoch_csr_plain_sgd(data, indices, indptr, y, sw, order, coef, state, t, codes, hp,
                                                work[0], work[1], lazy_work, index_work[0], counters)
    else:
        deferred = running is not None  # (check_running_state: only where the codes allow it)
        if not deferred:
            _start_lazy_epoch(coef, t, lazy_work, index_work[0])
        status, loss_sum = _epoch_csr_general(data, indices, indptr, y, sw, order, coef, state, t, codes, hp,
                                              batch_size, grad, work, lazy_work, index_work, counters,
                                              C.sparse_mode(codes, hp), _mu_product(codes, hp, t), deferred,
                                              running if deferred else np.ones(C.DEFERRED_FIELDS),
                                              deferred and C.deferred_keeps_sum_of_squares(codes, hp))
    return status, loss_sum


# Each CSR kernel checks the weights for non-finite values *before* its end-of-epoch fold or
# catch-up (which maps finite values to finite values), and returns early on a non-finite
# loss: a diverged CSR epoch has changed only the coordinates its rows touch (and the
# intercept), so the driver may snapshot just those (fastgd._solver.rollback_rows).
CSR_DIVERGENCE_TOUCHES_ONLY_ROWS = True
# epoch_csr takes ``running``: the running-scale kernel's scale (and the stored weights' sum of
# squares) kept between calls (fastgd._solver.settle_scale).
CSR_RUNNING_SCALE = True
# ... and the general kernel's deferred catch-up state (fastgd._contract: csr_deferred_catch_up).
CSR_DEFERRED_CATCH_UP = True


@njit(cache=True, nogil=True, error_model="numpy")
def _start_lazy_epoch(coef, t, lazy_work, mark):
    """Every coordinate starts the epoch up to date: snapshot (t, A = 1, B = 0), unmarked."""
    for c in range(coef.shape[0] - 1):
        lazy_work[c, 0] = t[0]
        lazy_work[c, 1] = 1.0
        lazy_work[c, 2] = 0.0
        mark[c] = -1


@njit(cache=True, nogil=True, error_model="numpy")
def _sum_sq_rows(coef, rows, n_rows, inv):
    """The sum of ``(coef[c] * inv)**2`` over the rows ``rows[:n_rows]``."""
    total = 0.0
    for q in range(n_rows):
        for k in range(coef.shape[1]):
            v = coef[rows[q], k] * inv
            total += v * v
    return total


@njit(cache=True, nogil=True, error_model="numpy")
def _epoch_csr_general(data, indices, indptr, y, sw, order, coef, state, t, codes, hp,
                       batch_size, grad, work, lazy_work, index_work, counters, mode, mu_prod, deferred,
                       running, track_sq):
    """Every other CSR epoch, in the sparse path ``mode`` (:func:`fastgd._contract.sparse_mode`).
    ``deferred``: carry on the catch-up state ``running`` (fastgd._contract: the deferred
    catch-up), and leave the lagging coordinates behind at the end; ``track_sq``: keep its
    ``running[D_SQ]`` (:func:`fastgd._contract.deferred_keeps_sum_of_squares`)."""
    (data, indices, indptr, y, sw, order, coef, state, t, codes, hp, grad, work, lazy_work,
     index_work, counters) = _borrowed(
        data, indices, indptr, y, sw, order, coef, state, t, codes, hp, grad, work, lazy_work,
        index_work, counters)
    n_steps = order.shape[0]
    p1, K = coef.shape
    p = p1 - 1
    loss_code = codes[_C_LOSS]
    rmsprop = codes[_C_OPT] == _OPT_RMSPROP
    rho = hp[_H_RHO]
    sgd = codes[_C_OPT] == _OPT_SGD
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    z = work[0]
    dz = work[1]
    mark = index_work[0]
    rows = index_work[1]
    w, g, st = _flat(coef, grad, state)
    lazy = lazy_work.reshape(lazy_work.size)  # flat views made once: a reshape is a run-time call
    if deferred:
        A = running[_D_A]
        B = running[_D_B]
        stamp = np.int64(running[_D_STAMP])
        sq = running[_D_SQ]
    else:
        grad[:, :] = 0.0
        A = 1.0
        B = 0.0
        stamp = np.int64(0)
        sq = 0.0
    status = _OK
    loss_sum = 0.0
    for start in range(0, n_steps, batch_size):
        end = min(start + batch_size, n_steps)
        stamp = stamp - 1 if deferred else t[0] + 1
        T = float(t[0])
        nt = 0
        for j in range(start, end):
            i = order[j]
            for ptr in range(indptr[i], indptr[i + 1]):
                c = indices[ptr]
                if mark[c] != stamp:
                    mark[c] = stamp
                    rows[nt] = c
                    nt += 1
                    if mode == _SPARSE_LAZY_EXACT:
                        counters[_COUNT_CATCHUPS] += _rules.catch_up(w, st, c, K, A, B, T, lazy, rmsprop, rho)
        batch_loss = 0.0
        for j in range(start, end):
            _prefetch_csr_ahead(data, indices, indptr, order, j, n_steps)
            i = order[j]
            for k in range(K):
                z[k] = coef[p, k]
            for ptr in range(indptr[i], indptr[i + 1]):
                c = indices[ptr]
                x = data[ptr]
                for k in range(K):
                    z[k] += x * coef[c, k]
            loss = sample_loss(loss_code, z, y, i, dz, K, hp)
            s = sw[i]
            batch_loss += s * loss
            for k in range(K):
                dz[k] *= s
            for ptr in range(indptr[i], indptr[i + 1]):
                c = indices[ptr]
                x = data[ptr]
                for k in range(K):
                    grad[c, k] += x * dz[k]
            for k in range(K):
                grad[p, k] += dz[k]
        loss_sum += batch_loss
        rows[nt] = p
        if not np.isfinite(batch_loss):
            status = _NONFINITE
            for q in range(nt + 1):  # (a deferred state keeps grad all zeros)
                for k in range(K):
                    grad[rows[q], k] = 0.0
            break
        if track_sq:  # the touched rows' terms leave the sum: they are up to date, at A
            sq -= _sum_sq_rows(coef, rows, nt, 1.0 / A)
        inv_b = 1.0 / (end - start)
        if mode == _SPARSE_DENSE:
            _, mu_prod = apply_step(w, g, st, K, t, codes, hp, inv_b, mu_prod)
            counters[_COUNT_UPDATES] += p1
        else:
            lr, mu_prod = apply_step_rows(w, g, st, K, t, codes, hp, inv_b, rows, nt + 1, mu_prod)
            counters[_COUNT_UPDATES] += nt + 1
            if mode == _SPARSE_LAZY_EXACT:
                a = 1.0 - lr * l2 if sgd else 1.0
                restart = a <= 0.0 or A * a < _RESCALE_BELOW  # (what _advance_map tests)
                A, B = _advance_map(coef, state, A, B, T, a, lr * l1, lazy_work, mark, stamp, rmsprop, rho, counters)
                if track_sq:
                    if restart:  # every coordinate is up to date, the map starts again at A = 1
                        sq = _sum_sq_rows(coef, np.arange(p), p, 1.0)
                    else:
                        sq += _sum_sq_rows(coef, rows, nt, 1.0 / A)
                for q in range(nt):
                    c = rows[q]
                    lazy_work[c, 0] = T + 1.0
                    lazy_work[c, 1] = A
                    lazy_work[c, 2] = B
        for q in range(nt + 1):
            for k in range(K):
                grad[rows[q], k] = 0.0
        if deferred and not _all_finite_rows(coef, rows, nt + 1):
            status = _NONFINITE
            break
    if deferred:
        running[_D_A] = A
        running[_D_B] = B
        running[_D_STAMP] = float(stamp)
        running[_D_SQ] = sq
        return status, loss_sum
    if status != _OK:
        return status, loss_sum
    if not _all_finite(coef):  # before the catch-up: a diverged epoch leaves untouched weights as they were
        return _NONFINITE, loss_sum
    if mode == _SPARSE_LAZY_EXACT:
        _catch_up_all(coef, state, A, B, float(t[0]), lazy_work, rmsprop, rho, counters)
    return _OK, loss_sum


@njit(cache=True, nogil=True, error_model="numpy")
def _all_finite_rows(coef, rows, n_rows):
    for q in range(n_rows):
        for k in range(coef.shape[1]):
            if not np.isfinite(coef[rows[q], k]):
                return False
    return True


# The compiled entry points (for tests and benchmarks that inspect compilation and caching).
COMPILED_KERNELS = (_epoch_dense_plain_sgd, _epoch_dense_single, _epoch_dense_multi, _epoch_csr_scaled_sgd,
                    _epoch_csr_plain_sgd,
                    _epoch_csr_general, _chunked_gradient, _epoch_dense_chunked)


# --- SAGA epochs (fastgd._contract: SAGA epochs) --------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _saga_sample(y, sw, i, z, dz, mem, K, codes, hp, step):
    """Sample ``i``'s weighted loss at its margins ``z`` and, when finite, the step's learning
    rate, with ``dz`` turned into the change of its stored gradient scalars (``mem`` updated)."""
    loss = sw[i] * sample_loss(codes[_C_LOSS], z, y, i, dz, K, hp)
    if not np.isfinite(loss):
        return loss, 0.0
    _rules.saga_remember(dz, mem, i * K, K, float(sw[i]))
    return loss, learning_rate(codes, hp, step)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _saga_dense_steps(X, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean, K):
    """The SAGA epoch loop on dense rows; inlined with ``K`` the literal 1 and with ``K`` read
    at run time (as :func:`_epoch_dense_batches`: the single-output loops then compile
    without the per-output inner loops)."""
    (X, y, sw, order, coef, state, t, codes, hp, work, memory) = _borrowed(
        X, y, sw, order, coef, state, t, codes, hp, work, memory)
    p = X.shape[1]
    n = (p + 1) * K
    w = coef.reshape(n)
    mean = state.reshape(state.shape[0] * n)
    mem = memory.reshape(memory.shape[0] * K)
    z = work[0]
    dz = work[1]
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    inv_n = 1.0 / n_mean
    loss_sum = 0.0
    n_steps = order.shape[0]
    step = t[0]
    for j in range(n_steps):
        if j + PREFETCH_AHEAD < n_steps:
            _prefetch_row(X, order[j + PREFETCH_AHEAD])
        i = order[j]
        _margins_dense(X[i], w, K, z)
        loss, lr = _saga_sample(y, sw, i, z, dz, mem, K, codes, hp, step)
        loss_sum += loss
        if not np.isfinite(loss):
            t[0] = step
            return _NONFINITE, loss_sum
        for f in range(p):
            _rules.saga_row(w, mean, f * K, K, float(X[i, f]), dz, inv_n, lr, l2, l1)
        _rules.saga_row(w, mean, p * K, K, 1.0, dz, inv_n, lr, 0.0, 0.0)
        step += 1
    t[0] = step
    return _OK, loss_sum


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _epoch_saga_dense_single(X, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean):
    return _saga_dense_steps(X, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean, 1)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _epoch_saga_dense_multi(X, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean):
    return _saga_dense_steps(X, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean, coef.shape[1])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _epoch_saga_csr(data, indices, indptr, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean):
    (data, indices, indptr, y, sw, order, coef, state, t, codes, hp, work, memory) = _borrowed(
        data, indices, indptr, y, sw, order, coef, state, t, codes, hp, work, memory)
    K = coef.shape[1]
    p = coef.shape[0] - 1
    n = (p + 1) * K
    w = coef.reshape(n)
    mean = state.reshape(state.shape[0] * n)
    mem = memory.reshape(memory.shape[0] * K)
    z = work[0]
    dz = work[1]
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    inv_n = 1.0 / n_mean
    loss_sum = 0.0
    n_steps = order.shape[0]
    step = t[0]
    for j in range(n_steps):
        _prefetch_csr_ahead(data, indices, indptr, order, j, n_steps)
        i = order[j]
        lo, hi = indptr[i], indptr[i + 1]
        for k in range(K):
            z[k] = w[p * K + k]
        for e in range(lo, hi):
            c = _u(indices[e])
            for k in range(K):
                z[k] += data[e] * w[c * K + k]
        loss, lr = _saga_sample(y, sw, i, z, dz, mem, K, codes, hp, step)
        loss_sum += loss
        if not np.isfinite(loss):
            t[0] = step
            return _NONFINITE, loss_sum
        # the mean is dense: every row steps, the row's stored columns (sorted) with their value
        e = lo
        for f in range(p):
            x = 0.0
            if e < hi and indices[e] == f:
                x = float(data[e])
                e += 1
            _rules.saga_row(w, mean, f * K, K, x, dz, inv_n, lr, l2, l1)
        _rules.saga_row(w, mean, p * K, K, 1.0, dz, inv_n, lr, 0.0, 0.0)
        step += 1
    t[0] = step
    return _OK, loss_sum


def epoch_saga_dense(X, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean):
    """One epoch of SAGA steps on dense ``X`` (see :mod:`fastgd._contract`, SAGA epochs)."""
    C.check_buffers(X.shape[0], X.shape[1], y, sw, coef, state, t, codes, hp, 1, coef, work)
    C.check_saga_buffers(X.shape[0], codes, coef, state, memory, n_mean)
    status = _check_saga_codes(codes)
    if status != _OK:
        return status, 0.0
    kernel = _epoch_saga_dense_single if coef.shape[1] == 1 else _epoch_saga_dense_multi
    status, loss_sum = kernel(X, y, sw, order, coef, state, t, codes, hp, work, memory, float(n_mean))
    if status == _OK and not _all_finite(coef):
        status = _NONFINITE
    return status, loss_sum


def epoch_saga_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp, work, memory,
                   n_mean):
    """One epoch of SAGA steps on CSR parts (canonical rows: sorted, no duplicates). Every
    parameter steps every step (the mean of the stored gradients is dense): O(p K) a step."""
    n_rows = indptr.shape[0] - 1
    C.check_buffers(n_rows, n_features, y, sw, coef, state, t, codes, hp, 1, coef, work)
    C.check_saga_buffers(n_rows, codes, coef, state, memory, n_mean)
    C.check_csr_buffers(data, indices, indptr, n_features, None, None, np.zeros(C.N_COUNTERS, np.int64), False)
    status = _check_saga_codes(codes)
    if status != _OK:
        return status, 0.0
    status, loss_sum = _epoch_saga_csr(data, indices, indptr, y, sw, order, coef, state, t, codes, hp, work,
                                       memory, float(n_mean))
    if status == _OK and not _all_finite(coef):
        status = _NONFINITE
    return status, loss_sum


def _check_saga_codes(codes):
    """The loss and schedule codes in range (the optimizer code is SAGA's, checked at entry)."""
    return _rules.check_codes.py_func(int(codes[_C_LOSS]), _OPT_SGD, int(codes[_C_SCHED]), int(codes[_C_UNIT]))


# --- Hogwild! epochs (fastgd._contract: Hogwild! epochs) ------------------------------------
@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, inline="always")
def _hogwild_share(data, indices, indptr, y, sw, order, lo_j, hi_j, clock, stride, w, codes, hp, col_scale):
    """Steps of the samples ``order[lo_j:hi_j]``, the s-th at step clock ``clock + s * stride``.
    Returns the share's loss sum and whether it stopped on a non-finite loss."""
    p = w.shape[0] - 1
    dt = w.dtype.type
    loss_code = codes[_C_LOSS]
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    loss_sum = 0.0
    for j in range(lo_j, hi_j):
        _prefetch_csr_ahead(data, indices, indptr, order, j, hi_j)
        i = _u(order[j])
        lo = _u(indptr[i])
        hi = _u(indptr[i + _U1])
        m = dt(0.0)
        for ptr in range(lo, hi):
            m += data[ptr] * w[_u(indices[ptr])]
        loss, d = _loss_1_inline(loss_code, float(m + w[p]), float(y[i, 0]), hp)
        loss *= sw[i]
        loss_sum += loss
        if not np.isfinite(loss):
            return loss_sum, True
        lr = learning_rate(codes, hp, clock + (j - lo_j) * stride)
        cg = lr * d * sw[i]
        for ptr in range(lo, hi):
            c = _u(indices[ptr])
            scale = col_scale[c]
            w[c] = _rules.hogwild_coordinate(float(w[c]), float(data[ptr]), cg, lr * l2 * scale, lr * l1 * scale)
        w[p] -= dt(cg)
    return loss_sum, False


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST, parallel=True)
def _epoch_csr_hogwild(data, indices, indptr, y, sw, order, coef, t, codes, hp, col_scale, n_shares, losses,
                       stopped):
    w = coef.reshape(coef.shape[0])
    n_steps = order.shape[0]
    t0 = t[0]
    for c in prange(n_shares):
        losses[c], stopped[c] = _hogwild_share(data, indices, indptr, y, sw, order, c * n_steps // n_shares,
                                               (c + 1) * n_steps // n_shares, t0 + c, n_shares, w, codes, hp,
                                               col_scale)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _epoch_csr_hogwild_serial(data, indices, indptr, y, sw, order, coef, t, codes, hp, col_scale, n_shares, losses,
                              stopped):
    """The shares one after the other (a process that may not start threads: see _fork_safety)."""
    w = coef.reshape(coef.shape[0])
    n_steps = order.shape[0]
    t0 = t[0]
    for c in range(n_shares):
        losses[c], stopped[c] = _hogwild_share(data, indices, indptr, y, sw, order, c * n_steps // n_shares,
                                               (c + 1) * n_steps // n_shares, t0 + c, n_shares, w, codes, hp,
                                               col_scale)
        if stopped[c]:
            return


def epoch_csr_hogwild(data, indices, indptr, n_features, y, sw, order, coef, t, codes, hp, col_scale, n_shares,
                      losses):
    """One Hogwild! epoch on CSR parts (see :mod:`fastgd._contract`): ``n_shares`` threads
    update ``coef`` without locks. Non-deterministic when ``n_shares > 1``."""
    from fastgd._backends import _fork_safety

    status = _check_hogwild(indptr.shape[0] - 1, n_features, y, sw, coef, t, codes, hp, col_scale, n_shares, losses)
    C.check_csr_buffers(data, indices, indptr, n_features, None, None, np.zeros(C.N_COUNTERS, np.int64), False)
    if status != _OK:
        return status, 0.0
    stopped = np.zeros(n_shares, dtype=np.bool_)
    losses[:n_shares] = 0.0
    if n_shares > 1 and _fork_safety.multicore_allowed(name):
        import numba

        _fork_safety.note_multicore_run()
        previous = numba.get_num_threads()
        numba.set_num_threads(min(n_shares, numba.config.NUMBA_NUM_THREADS))
        try:
            _epoch_csr_hogwild(data, indices, indptr, y, sw, order, coef, t, codes, hp, col_scale, n_shares, losses,
                               stopped)
        finally:
            numba.set_num_threads(previous)
    else:
        _epoch_csr_hogwild_serial(data, indices, indptr, y, sw, order, coef, t, codes, hp, col_scale, n_shares,
                                  losses, stopped)
    loss_sum = float(np.sum(losses[:n_shares]))
    if stopped.any() or not _all_finite(coef):
        return _NONFINITE, loss_sum
    t[0] += order.shape[0]
    return _OK, loss_sum


def _check_hogwild(n_rows, n_features, y, sw, coef, t, codes, hp, col_scale, n_shares, losses):
    """The Hogwild! entry check: the buffers, and the one configuration it runs."""
    C.check_buffers(n_rows, n_features, y, sw, coef, np.zeros((0, 0, 0), coef.dtype), t, codes, hp, 1, coef,
                    np.zeros((C.WORK_ROWS, 1), coef.dtype))
    if not C.plain_sgd_per_sample(codes, hp, 1, coef.shape[1]):
        raise ValueError("Hogwild! epochs run per-sample plain SGD with one output and no clipping")
    if col_scale.shape[0] != n_features or n_shares < 1 or losses.shape[0] < n_shares:
        raise ValueError(f"col_scale has {col_scale.shape[0]} entries (need {n_features}); n_shares {n_shares} "
                         f"(need >= 1, losses has {losses.shape[0]})")
    return _check_codes(codes)
