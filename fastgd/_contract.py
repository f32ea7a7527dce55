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
y           (n, n_targets), X.dtype               targets; class index (as float) for softmax
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
is ``STATUS_OK`` or ``STATUS_NONFINITE`` (a non-finite loss or parameter: the kernel returns at
once, leaving ``coef`` partly updated; the driver restores the epoch's starting point).

Kernels validate nothing, never allocate per step, never call back into Python.
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

OPT_SGD = 0  # plain SGD or SGD with momentum (H_MOMENTUM > 0), Nesterov flag
OPT_ADAGRAD = 1
OPT_RMSPROP = 2
OPT_ADAM = 3  # Adam / AMSGrad; AdamW is Adam with H_WEIGHT_DECAY > 0

SCHED_CONSTANT = 0
SCHED_STEP = 1
SCHED_EXPONENTIAL = 2
SCHED_POLYNOMIAL = 3
SCHED_COSINE = 4
SCHED_INVSCALING = 5

UNIT_STEP = 0  # the schedule's clock is t, the optimizer steps taken before this step
UNIT_EPOCH = 1  # the schedule's clock is the epoch index hp[H_EPOCH]

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
N_HP = 18

# --- status codes ------------------------------------------------------------------------
STATUS_OK = 0
STATUS_NONFINITE = 1

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
    raise ValueError(f"unknown optimizer code {optimizer_code}")


# --- multi-core dense epochs (optional backend extension) ---------------------------------
# ``epoch_dense_chunked(..., grad, work, partial, pwork, losses)`` is ``epoch_dense`` with each
# batch gradient summed over N_CHUNKS fixed slices of the batch in parallel
# (``partial``: (N_CHUNKS, p + 1, K), ``pwork``: (N_CHUNKS, WORK_ROWS, K), ``losses``:
# (N_CHUNKS,) float64), then added in slice order: the result does not depend on the thread
# count. The driver uses it for batches with at least CHUNKED_MIN_WORK = b * p * K.
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
LAZY_FIELDS = 3  # last step, A at that step, B at that step
COUNT_UPDATES = 0  # coordinate rows updated by an optimizer step
COUNT_CATCHUPS = 1  # coordinate rows brought up to date lazily
N_COUNTERS = 2

SPARSE_DENSE = 0  # every coordinate every step (exact)
SPARSE_LAZY_EXACT = 1  # touched coordinates + closed-form catch-up (exact)
SPARSE_LAZY_APPROX = 2  # touched coordinates only (approximate; opt-in)


def plain_sgd_per_sample(codes, hp, batch_size, n_outputs):
    """True when an epoch takes the fused per-sample plain-SGD kernels (batch size 1, one
    output, SGD without momentum, no clipping)."""
    return (batch_size == 1 and n_outputs == 1 and codes[C_OPTIMIZER] == OPT_SGD
            and hp[H_MOMENTUM] == 0 and hp[H_CLIP] == 0)


def csr_needs_lazy_buffers(codes, hp, batch_size, n_outputs):
    """False when a CSR epoch takes the running-scale kernel (per-sample plain SGD, L2 only),
    which uses neither ``lazy_work`` nor ``index_work``: the driver then passes empty ones
    (for a million features that saves 40 MB of zeroed memory per fit)."""
    return not (plain_sgd_per_sample(codes, hp, batch_size, n_outputs) and hp[H_L1] == 0)


def sparse_mode(codes, hp):
    """Which sparse update path the kernels take for these codes / hyper-parameters."""
    opt = codes[C_OPTIMIZER]
    exact = (opt == OPT_SGD and hp[H_MOMENTUM] == 0) or (
        opt in (OPT_ADAGRAD, OPT_RMSPROP) and hp[H_L2] == 0
    )
    if exact:
        return SPARSE_LAZY_EXACT
    return SPARSE_LAZY_APPROX if codes[C_LAZY] else SPARSE_DENSE
