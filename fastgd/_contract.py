"""The kernel contract: the one place that defines what every backend agrees on.

A kernel trains one epoch in one call and sees only arrays and scalars:

``epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work)``
``epoch_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp,
batch_size, grad, work, lazy_work, index_work, counters)`` (the CSR buffers: see below)

and returns ``(status, loss_sum)``. The arrays are

==========  ====================================  ==========================================
name        shape / dtype                         meaning
==========  ====================================  ==========================================
X           (n, p), C-contiguous, float32/64      features (or CSR parts data/indices/indptr)
y           (n, n_targets), X.dtype               targets; class index (as float) for softmax,
                                                  0 / 1 for the binary losses (``BINARY_LOSSES``)
sw          (n,), X.dtype                         sample weights, normalised to mean 1
order       (n_steps_samples,), int64             sample order of this epoch (drawn in Python)
coef        (p + 1, K), X.dtype                   weights; the intercept is the last row
state       (n_slots, p + 1, K), X.dtype          optimizer state (see ``N_SLOTS``)
t           (1,), int64                           optimizer steps taken so far (updated)
codes       (N_CODES,), int64                     integer switches at the ``C_*`` slots
hp          (N_HP,), float64                      hyper-parameters at the ``H_*`` slots
grad        (p + 1, K), X.dtype                   gradient buffer (scratch)
work        (WORK_ROWS, K), X.dtype               per-sample scratch (margins, dloss/dz)
==========  ====================================  ==========================================

``loss_sum`` is the sum over the epoch of ``sw[i] * loss_i``, each sample's loss taken at the
parameters *before* the step its batch contributes to (the running training loss). The status
is ``STATUS_OK``, ``STATUS_NONFINITE`` (a non-finite loss or parameter: the kernel returns at
once, leaving ``coef`` partly updated; the driver restores the epoch's starting point) or one
of the ``STATUS_BAD_*`` errors: a loss, optimizer or schedule code out of range, found before
any work (the driver raises naming the code).

Kernels check what is cheap at every entry point, once per call: the codes are in range and
the buffers' shapes agree (a mismatch raises ``ValueError``; a compiled kernel would
otherwise read or write out of bounds). They do not validate values (the estimators do), never
allocate per step, never call back into Python.

The decisions below (``n_slots``, ``plain_sgd_per_sample``, ``csr_needs_lazy_buffers``,
``csr_fused_plain_sgd``, ``deferred_keeps_sum_of_squares``, ``sparse_mode``) are made here
only; the engines take them from these functions.
"""

# --- integer switches (``codes``) -------------------------------------------------------
C_LOSS = 0
C_OPTIMIZER = 1
C_NESTEROV = 2
C_AMSGRAD = 3
C_SCHEDULE = 4
C_SCHEDULE_UNIT = 5
C_LAZY = 6  # sparse only: 1 = lazy (approximate) catch-up for momentum / Adam
N_CODES = 7

LOSS_SQUARED = 0  # (y_hat - y)^2 per output, summed over outputs
LOSS_LOG = 1  # binary log loss on one margin, y in {0, 1}
LOSS_SOFTMAX = 2  # multinomial cross-entropy on K margins, y = class index
# scikit-learn's SGD losses (fastgd.losses has the formulas). The binary ones take y in {0, 1}
# like LOSS_LOG and read it as s = 2 y - 1 in {-1, 1}; their margin is one output (K = 1).
LOSS_HINGE = 3  # max(0, 1 - s z)
LOSS_SQUARED_HINGE = 4  # max(0, 1 - s z)^2
LOSS_MODIFIED_HUBER = 5  # (1 - s z)^2 for s z >= -1, -4 s z below; 0 from s z >= 1
LOSS_PERCEPTRON = 6  # max(0, -s z)
LOSS_HUBER = 7  # r^2 / 2 for |r| <= delta, delta (|r| - delta / 2) beyond; r = z - y, delta = H_LOSS_PARAM
LOSS_EPSILON_INSENSITIVE = 8  # max(0, |z - y| - epsilon), epsilon = H_LOSS_PARAM
LOSS_SQUARED_EPSILON_INSENSITIVE = 9  # max(0, |z - y| - epsilon)^2
N_LOSSES = 10
BINARY_LOSSES = (LOSS_LOG, LOSS_HINGE, LOSS_SQUARED_HINGE, LOSS_MODIFIED_HUBER, LOSS_PERCEPTRON)
REGRESSION_LOSSES = (LOSS_SQUARED, LOSS_HUBER, LOSS_EPSILON_INSENSITIVE, LOSS_SQUARED_EPSILON_INSENSITIVE)

OPT_SGD = 0  # plain SGD or SGD with momentum (H_MOMENTUM > 0), Nesterov flag
OPT_ADAGRAD = 1
OPT_RMSPROP = 2
OPT_ADAM = 3  # Adam / AMSGrad; AdamW is Adam with H_WEIGHT_DECAY > 0
OPT_ADAMAX = 4
OPT_NADAM = 5
N_OPTIMIZERS = 6
# SAGA keeps one derivative per sample besides the parameter-shaped state, so it is not a
# per-batch update rule: the epoch kernels above reject its code (it is outside
# N_OPTIMIZERS) and the SAGA kernels below take it.
OPT_SAGA = 6

SCHED_CONSTANT = 0
SCHED_STEP = 1
SCHED_EXPONENTIAL = 2
SCHED_POLYNOMIAL = 3
SCHED_COSINE = 4
SCHED_INVSCALING = 5
SCHED_COSINE_RESTARTS = 6
SCHED_ONE_CYCLE = 7
N_SCHEDULES = 8

UNIT_STEP = 0  # the schedule's clock is t, the optimizer steps taken before this step
UNIT_EPOCH = 1  # the schedule's clock is the epoch index hp[H_EPOCH]
N_UNITS = 2

# --- hyper-parameter slots (``hp``) -----------------------------------------------------
H_LR = 0  # base learning rate eta0
H_LR_SCALE = 1  # multiplier set between epochs (reduce-on-plateau); 1 otherwise
H_MOMENTUM = 2
H_BETA1 = 3
H_BETA2 = 4
H_EPS = 5
H_RHO = 6
H_WEIGHT_DECAY = 7  # decoupled (AdamW) decay, applied as w *= 1 - lr * wd
H_L2 = 8  # coupled L2 strength alpha * (1 - l1_ratio), added to the gradient
H_L1 = 9  # L1 strength alpha * l1_ratio, applied by a proximal (soft-threshold) step
H_CLIP = 10  # global gradient-norm bound; 0 disables clipping
H_GAMMA = 11  # step / exponential decay factor
H_STEP_SIZE = 12  # step decay period (in the schedule's unit)
H_POWER = 13  # polynomial / inverse-scaling exponent
H_T_MAX = 14  # polynomial / cosine horizon (in the schedule's unit)
H_LR_MIN = 15  # polynomial end / cosine minimum learning rate
H_WARMUP = 16  # linear warm-up length (in the schedule's unit); 0 = none
H_EPOCH = 17  # the epoch index (clock of UNIT_EPOCH schedules)
H_LOSS_PARAM = 18  # the loss's own parameter (e.g. Huber's delta, the epsilon-insensitive margin)
H_MOMENTUM_DECAY = 19  # NAdam's momentum decay psi
H_T_0 = 20  # cosine warm restarts: length of the first cycle
H_T_MULT = 21  # cosine warm restarts: cycle length factor
H_MAX_LR = 22  # one-cycle peak rate; 0 = the base rate H_LR
H_PCT_START = 23  # one-cycle: fraction of the horizon H_T_MAX spent rising
H_DIV_FACTOR = 24  # one-cycle: initial rate = peak / div_factor
H_FINAL_DIV_FACTOR = 25  # one-cycle: final rate = initial rate / final_div_factor
H_ANNEAL_LINEAR = 26  # one-cycle: 1 = linear annealing, 0 = cosine
N_HP = 27

# --- status codes ------------------------------------------------------------------------
STATUS_OK = 0
STATUS_NONFINITE = 1
STATUS_BAD_LOSS = 2  # codes[C_LOSS] out of range
STATUS_BAD_OPTIMIZER = 3  # codes[C_OPTIMIZER] out of range
STATUS_BAD_SCHEDULE = 4  # codes[C_SCHEDULE] or codes[C_SCHEDULE_UNIT] out of range
BAD_CODE_SLOTS = {STATUS_BAD_LOSS: ("loss", C_LOSS), STATUS_BAD_OPTIMIZER: ("optimizer", C_OPTIMIZER),
                  STATUS_BAD_SCHEDULE: ("schedule", C_SCHEDULE)}

# --- optimizer state slots: state[S_*] (see n_slots) ---------------------------------------
S_VELOCITY = 0  # SGD with momentum: the momentum buffer
S_SUM = 0  # AdaGrad: the sum of squared gradients
S_SQUARE_AVG = 0  # RMSprop: the running average of squared gradients
S_EXP_AVG = 0  # Adam, Adamax, NAdam: first moment
S_EXP_AVG_SQ = 1  # Adam, NAdam: second moment
S_MAX_EXP_AVG_SQ = 2  # AMSGrad: running maximum of the second moment
S_EXP_INF = 1  # Adamax: exponentially weighted infinity norm
S_SAGA_MEAN = 0  # SAGA: the mean of the stored per-sample gradients

# --- per-sample scratch: rows of ``work`` --------------------------------------------
WORK_ROWS = 2  # row 0: margins z, row 1: dloss/dz


def n_slots(optimizer_code, momentum, amsgrad):
    """Number of optimizer-state slots the kernel reads and writes."""
    if optimizer_code == OPT_SGD:
        return 1 if momentum > 0 else 0
    if optimizer_code in (OPT_ADAGRAD, OPT_RMSPROP):
        return 1
    if optimizer_code == OPT_ADAM:
        return 3 if amsgrad else 2
    if optimizer_code in (OPT_ADAMAX, OPT_NADAM):
        return 2
    if optimizer_code == OPT_SAGA:
        return 1
    raise ValueError(f"unknown optimizer code {optimizer_code}")


# --- multi-core dense epochs (optional backend extension) ---------------------------------
# ``epoch_dense_chunked(..., grad, work, partial, pwork, losses)`` is ``epoch_dense`` with each
# batch gradient summed over N_CHUNKS fixed slices of the batch in parallel
# (``partial``: (N_CHUNKS, p + 1, K), ``pwork``: (N_CHUNKS, WORK_ROWS, K), ``losses``:
# (N_CHUNKS,) float64), then added in slice order: the result does not depend on the thread
# count. The driver uses it for batches with at least CHUNKED_MIN_WORK = b * p * K.
# Slices are handed out to threads dynamically; a power of two (the kernels spread the
# buffers of consecutive slices apart by reversing the bits of the slice index).
N_CHUNKS = 8
CHUNKED_MIN_WORK = 1 << 17


# --- sparse (CSR) epochs -------------------------------------------------------------------
# ``epoch_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp,
# batch_size, grad, work, lazy_work, index_work, counters)`` adds three buffers:
#   lazy_work   (p, LAZY_FIELDS), float64: per coordinate, the step it was last brought up to
#               date and the cumulative shrink map (A, B) at that step (see below); a
#               coordinate's fields are adjacent, so a catch-up costs one cache miss;
#   index_work  (2, p + 1), int64: row 0 a "touched by step #" stamp per coordinate, row 1
#               the list of rows a batch touches (the intercept row p last);
#   counters    (N_COUNTERS,), int64: work done, accumulated (for tests of O(nnz) cost).
# Between steps, a coordinate that no sample of the batch touches receives only the
# penalty / optimizer decay. Where that has a closed form, the kernel defers it and catches
# the coordinate up when it is next touched and at the end of the epoch ("lazy, exact"):
#   - SGD without momentum, L2 and/or L1: |w| <- max(a_s |w| - b_s, 0) per step with
#     a_s = 1 - lr_s * l2, b_s = lr_s * l1; composed maps are x -> A x - B.
#   - AdaGrad and RMSprop without L2: an untouched weight does not move (L1 as above);
#     RMSprop's accumulator decays by rho per step.
# Otherwise (momentum, Adam, L2 with AdaGrad/RMSprop, AdamW decay) the exact path updates
# every coordinate every step (O(p) per step). With codes[C_LAZY] = 1 those optimizers instead
# update only the coordinates the batch touches (and the intercept): a documented
# approximation (untouched coordinates keep their value and optimizer state unchanged).
#
# Deferred catch-up across calls (``running`` of ``DEFERRED_FIELDS`` float64, the general
# kernel in the lazy, exact path: see :func:`csr_deferred_catch_up`). The
# end-of-epoch catch-up, and everything else in an epoch that would touch every coordinate,
# is left out, so that an epoch (a ``partial_fit`` call) costs O(nnz):
#   - ``lazy_work`` and the stamps of ``index_work`` row 0 are kept from one call to the next
#     and not reset; the cumulative map carries on from ``running[D_A], running[D_B]``;
#     coordinates not touched stay behind (the driver catches them all up when something
#     reads the plain weights);
#   - the stamps are ``running[D_STAMP] - 1, - 2, ...`` (negative and decreasing, so never
#     one a per-epoch call wrote, ``t + 1 >= 1``, nor one this state wrote before);
#   - ``grad`` is all zeros on entry and is left so (the kernel zeroes the rows it used,
#     also when it stops on a non-finite loss);
#   - the weights' finiteness is checked on the rows each step changed;
#   - for SGD with L2 and no L1 (:func:`deferred_keeps_sum_of_squares`), ``running[D_SQ]``
#     is kept equal to the sum over coordinates of
#     ``(w / A_c)**2`` (``w`` as stored, ``A_c`` its snapshot's A): the weights' true sum of
#     squares is ``A**2 * running[D_SQ]``, O(nnz) to maintain (a catch-up leaves a term
#     unchanged). When the map restarts (``A`` about to underflow: every coordinate is then
#     brought up to date), it is recomputed. With L1 the kernel leaves it as it is: a
#     deferred soft-threshold can take a lagging weight to zero, which no per-row term
#     follows; the driver keeps the penalty's value instead (fastgd._lagging_norms);
#   - per-sample plain SGD with L1, which otherwise takes the fused lazy kernel, takes the
#     general kernel when given a deferred state (:func:`csr_fused_plain_sgd`).
# The values of ``running`` are written back on return, non-finite status included.
LAZY_FIELDS = 3  # last step, A at that step, B at that step
D_A, D_B, D_STAMP, D_SQ = 0, 1, 2, 3  # the fields of the deferred catch-up's ``running``
DEFERRED_FIELDS = 4
COUNT_UPDATES = 0  # coordinate rows updated by an optimizer step
COUNT_CATCHUPS = 1  # coordinate rows brought up to date lazily
N_COUNTERS = 2

SPARSE_DENSE = 0  # every coordinate every step (exact)
SPARSE_LAZY_EXACT = 1  # touched coordinates + closed-form catch-up (exact)
SPARSE_LAZY_APPROX = 2  # touched coordinates only (approximate; opt-in)


# --- SAGA epochs (Defazio, Bach and Lacoste-Julien 2014) ------------------------------------
# ``epoch_saga_dense(X, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean)`` and
# ``epoch_saga_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp,
# work, memory, n_mean)`` run one epoch of per-sample SAGA steps. For a linear model the
# gradient of sample i is ``d_i * [x_i, 1]`` with ``d_i = sw_i * dloss/dz`` (one scalar per
# output), so the stored gradients are
#   memory      (n, K), X.dtype: d_i of each sample when it was last visited (0: never);
#   state[S_SAGA_MEAN]  (p + 1, K): their mean ``(1/n_mean) sum_i memory_i [x_i, 1]``;
#   n_mean      the number of samples the mean is over (the training samples).
# A step on sample i with learning rate ``lr`` (the schedule's, at ``t``) updates every
# parameter, with ``delta = d_i(w) - memory_i``:
#   w <- prox_{lr * l1}(w - lr * (delta * x_i + mean + l2 * w)),  mean += delta * x_i / n_mean,
# then ``memory_i = d_i(w)`` (the intercept row has no penalty). The mean is dense, so each
# step costs O(p K) on CSR input too.


# --- Hogwild! epochs (Niu, Recht, Re and Wright 2011), opt-in ----------------------------
# ``epoch_csr_hogwild(data, indices, indptr, n_features, y, sw, order, coef, t, codes, hp,
# col_scale, n_shares, losses)``: per-sample plain SGD on CSR rows, one output, the epoch's
# order cut into ``n_shares`` contiguous shares run by as many threads at once, each reading
# and writing the shared ``coef`` without locks (non-deterministic by design). A step touches
# only the row's coordinates and the intercept. The penalty is split over the samples that
# store a feature (Niu et al., section 5): feature j, stored by n_j of the n samples, takes
#   w_j <- w_j - lr * (s * dloss * x_j + l2 * (n / n_j) * w_j), then the L1 step lr * l1 * n / n_j,
# whose sum over an epoch's samples is the full penalty's gradient: the objective (and its
# optimum) is that of the serial fit. ``col_scale`` (p,) float64 holds n / n_j (0 where
# n_j = 0); ``losses`` (n_shares,) float64 receives each share's loss sum. The step clock of
# share c's s-th sample is ``t + c + s * n_shares`` (the shares advance together); ``t``
# grows by the epoch's sample count.


def hogwild_applies(n_jobs, sparse, codes, hp, batch_size, n_outputs):
    """True when ``n_jobs > 1`` opts a fit into Hogwild! epochs: per-sample plain SGD, one
    output, CSR input."""
    return n_jobs > 1 and sparse and plain_sgd_per_sample(codes, hp, batch_size, n_outputs)


def plain_sgd_per_sample(codes, hp, batch_size, n_outputs):
    """True when an epoch takes the fused per-sample plain-SGD kernels (batch size 1, one
    output, SGD without momentum, no clipping)."""
    return (batch_size == 1 and n_outputs == 1 and codes[C_OPTIMIZER] == OPT_SGD
            and hp[H_MOMENTUM] == 0 and hp[H_CLIP] == 0)


def csr_running_scale(codes, hp, batch_size, n_outputs):
    """True when a CSR epoch takes the running-scale kernel (per-sample plain SGD, L2 only)."""
    return plain_sgd_per_sample(codes, hp, batch_size, n_outputs) and hp[H_L1] == 0


def csr_adagrad_per_sample(codes, hp, batch_size, n_outputs):
    """True when a CSR epoch takes the per-sample AdaGrad kernel (batch size 1, one output, no
    penalty, no clipping): a coordinate no row touches has a zero gradient and does not move,
    so only the row's coordinates and their accumulators are read and written."""
    return (batch_size == 1 and n_outputs == 1 and codes[C_OPTIMIZER] == OPT_ADAGRAD and hp[H_L2] == 0
            and hp[H_L1] == 0 and hp[H_CLIP] == 0)


def csr_needs_lazy_buffers(codes, hp, batch_size, n_outputs):
    """False when a CSR epoch takes the running-scale kernel or the per-sample AdaGrad one,
    which use neither ``lazy_work`` nor ``index_work``: the driver then passes empty ones
    (for a million features that saves 40 MB of zeroed memory per fit)."""
    return not (csr_running_scale(codes, hp, batch_size, n_outputs)
                or csr_adagrad_per_sample(codes, hp, batch_size, n_outputs))


def sparse_mode(codes, hp):
    """Which sparse update path the kernels take for these codes / hyper-parameters."""
    opt = codes[C_OPTIMIZER]
    exact = (opt == OPT_SGD and hp[H_MOMENTUM] == 0) or (
        opt in (OPT_ADAGRAD, OPT_RMSPROP) and hp[H_L2] == 0
    )
    if exact:
        return SPARSE_LAZY_EXACT
    return SPARSE_LAZY_APPROX if codes[C_LAZY] else SPARSE_DENSE


def state_slots(codes, hp):
    """:func:`n_slots` of the optimizer the kernel arrays describe."""
    return n_slots(codes[C_OPTIMIZER], hp[H_MOMENTUM], codes[C_AMSGRAD])


def check_buffers(n_rows, n_features, y, sw, coef, state, t, codes, hp, batch_size, grad, work):
    """Raise ``ValueError`` unless the buffers of an epoch call have the contract's shapes
    (O(1); the Python-level engines' entry check, as the Cython kernels' compiled one)."""
    if len(codes) < N_CODES or len(hp) < N_HP:
        raise ValueError(f"codes / hp have {len(codes)} / {len(hp)} entries; need {N_CODES} / {N_HP}")
    p1, K = coef.shape
    if n_features != p1 - 1 or y.shape[0] != n_rows or sw.shape[0] != n_rows:
        raise ValueError(f"inconsistent shapes: X ({n_rows}, {n_features}), y rows {y.shape[0]}, "
                         f"sw {sw.shape[0]}, coef ({p1}, {K})")
    need = K if codes[C_LOSS] == LOSS_SQUARED else 1
    if y.ndim != 2 or y.shape[1] < need:
        raise ValueError(f"y has shape {y.shape}; the loss needs ({n_rows}, {need})")
    if K != 1 and 0 <= codes[C_LOSS] < N_LOSSES and codes[C_LOSS] not in (LOSS_SQUARED, LOSS_SOFTMAX):
        raise ValueError(f"coef has {K} outputs; loss code {codes[C_LOSS]} is defined on one margin (K = 1)")
    if grad.shape != coef.shape:
        raise ValueError(f"grad has shape {grad.shape}; coef has {coef.shape}")
    if work.shape[0] < WORK_ROWS or work.shape[1] < K:
        raise ValueError(f"work has shape {work.shape}; need at least ({WORK_ROWS}, {K})")
    if 0 <= codes[C_OPTIMIZER] < N_OPTIMIZERS:
        slots = state_slots(codes, hp)
        if state.ndim != 3 or state.shape[0] < slots or (state.shape[0] > 0 and state.shape[1:] != coef.shape):
            raise ValueError(f"state has shape {state.shape}; the optimizer needs ({slots}, {p1}, {K})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if t.shape[0] < 1:
        raise ValueError("t must have one element")


def check_saga_buffers(n_rows, codes, coef, state, memory, n_mean):
    """The SAGA kernels' part of :func:`check_buffers`: the optimizer code, the stored
    per-sample gradients ``memory`` and the mean's slot (O(1))."""
    if codes[C_OPTIMIZER] != OPT_SAGA:
        raise ValueError(f"the SAGA kernels run optimizer code {OPT_SAGA}; got {codes[C_OPTIMIZER]}")
    if memory.ndim != 2 or memory.shape[0] != n_rows or memory.shape[1] != coef.shape[1]:
        raise ValueError(f"memory has shape {memory.shape}; need ({n_rows}, {coef.shape[1]})")
    if state.ndim != 3 or state.shape[0] < 1 or state.shape[1:] != coef.shape:
        raise ValueError(f"state has shape {state.shape}; SAGA needs (1, {coef.shape[0]}, {coef.shape[1]})")
    if n_mean < 1:
        raise ValueError(f"n_mean must be >= 1; got {n_mean}")


def check_csr_buffers(data, indices, indptr, n_features, lazy_work, index_work, counters, needs_lazy):
    """The CSR-specific part of :func:`check_buffers` (``needs_lazy``: see
    :func:`csr_needs_lazy_buffers`)."""
    n_rows = indptr.shape[0] - 1
    if n_rows < 0:
        raise ValueError("indptr must have at least one element")
    if indices.shape[0] != data.shape[0] or indptr[n_rows] > data.shape[0]:
        raise ValueError(f"inconsistent CSR parts: {data.shape[0]} values, {indices.shape[0]} "
                         f"indices, indptr ends at {indptr[n_rows]}")
    if needs_lazy and (lazy_work.shape[0] < n_features or lazy_work.shape[1] != LAZY_FIELDS):
        raise ValueError(f"lazy_work has shape {lazy_work.shape}; need ({n_features}, {LAZY_FIELDS})")
    if needs_lazy and (index_work.shape[0] < 2 or index_work.shape[1] < n_features + 1):
        raise ValueError(f"index_work has shape {index_work.shape}; need (2, {n_features + 1})")
    if counters.shape[0] < N_COUNTERS:
        raise ValueError(f"counters has {counters.shape[0]} entries; need {N_COUNTERS}")


def csr_deferred_catch_up(codes, hp, batch_size, n_outputs):
    """True when a CSR epoch may take a deferred catch-up state (``running`` of
    DEFERRED_FIELDS, see above): the general kernel (not the running-scale or per-sample
    AdaGrad one) in the lazy, exact path: SGD without momentum (L2, L1, both or none) and
    AdaGrad / RMSprop without L2 (L1 or none), at any batch size, or with clipping or several
    outputs. Per-sample plain SGD with L1 then takes the general kernel, not the fused one."""
    return (csr_needs_lazy_buffers(codes, hp, batch_size, n_outputs)
            and sparse_mode(codes, hp) == SPARSE_LAZY_EXACT)


def csr_fused_plain_sgd(codes, hp, batch_size, n_outputs, deferred):
    """True when a CSR epoch takes the fused lazy kernel of per-sample plain SGD (L1, or L1
    and L2: the running-scale kernel takes L2 alone): not when it carries a deferred state
    (``deferred``), which only the general kernel keeps."""
    return (plain_sgd_per_sample(codes, hp, batch_size, n_outputs) and not deferred
            and not csr_running_scale(codes, hp, batch_size, n_outputs))


def deferred_keeps_sum_of_squares(codes, hp):
    """True when the general kernel keeps ``running[D_SQ]`` of a deferred state (SGD with L2
    and no L1; see above)."""
    return codes[C_OPTIMIZER] == OPT_SGD and hp[H_L2] > 0 and hp[H_L1] == 0


def check_running_state(running, codes, hp, batch_size, n_outputs):
    """Raise ``ValueError`` unless ``running`` (``epoch_csr``'s optional running state) is
    None, or what the kernel these arrays select keeps in it: for the running-scale kernel,
    two float64, a scale in (0, 1] and a non-negative sum of squares; for the deferred
    catch-up (:func:`csr_deferred_catch_up`), DEFERRED_FIELDS float64 with A in (0, 1],
    B >= 0, a stamp <= -1 and a non-negative sum."""
    if running is None:
        return
    if csr_running_scale(codes, hp, batch_size, n_outputs):
        if running.shape == (2,) and running.dtype == "float64" and 0.0 < running[0] <= 1.0 and running[1] >= 0.0:
            return
        raise ValueError("running, for the running-scale kernel (per-sample plain SGD with no L1, one output), "
                         f"is two float64: a scale in (0, 1] and a sum of squares; got {running!r}")
    if csr_deferred_catch_up(codes, hp, batch_size, n_outputs):
        if (running.shape == (DEFERRED_FIELDS,) and running.dtype == "float64" and 0.0 < running[D_A] <= 1.0
                and running[D_B] >= 0.0 and running[D_STAMP] <= -1.0 and running[D_SQ] >= 0.0):
            return
        raise ValueError(f"running, for the deferred catch-up, is {DEFERRED_FIELDS} float64: A in (0, 1], B >= 0, "
                         f"a stamp <= -1 and a sum of squares >= 0; got {running!r}")
    raise ValueError("running is for the running-scale kernel (per-sample plain SGD with no L1, one output) or "
                     "the deferred catch-up (the lazy, exact path); these codes take neither: "
                     f"got {running!r}")
