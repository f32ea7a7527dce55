"""The penalty of weights that lag behind a deferred L1 shrink, kept at O(nnz log nnz) a call.

With L1, the deferred catch-up (fastgd._contract: deferred catch-up across calls) leaves each
coordinate that no step touches behind, with its snapshot: the weight ``w_s`` as stored, and
the cumulative map ``(A_s, B_s)`` when it was last brought up to date (``lazy_work``). At the
current map ``(A, B)`` its weight is ``sign(w_s) * max(A u - B, 0)`` with

    u = (|w_s| + B_s) / A_s,

fixed until the coordinate is touched again. ``B / A`` only grows, so a lagging weight that
has reached zero stays there, and the others (``u > B / A``: "alive") give the penalty from
their count ``N``, the sum ``S1`` of their ``u`` and the sum ``S2`` of their ``u**2``:

    sum |w|    = A S1 - B N,
    sum w**2   = A**2 S2 - 2 A B S1 + B**2 N.

The entries that reach zero as ``B / A`` grows are found in increasing ``u``: each training
call adds one sorted run of the entries it touched (at level 0), the last :data:`MERGE_WAYS`
runs of a level are merged into one run of the next (so an entry is merged O(log) times and
there are O(log) runs), and a pointer per run passes the entries already at zero. An entry is
current while its coordinate's clock (``lazy_work[:, 0]``) is the one it was recorded with: a
touch moves the clock, and the superseded entry is skipped when it is reached. Runs are never changed in place, so a
snapshot (for undoing a failed call) is a list of references.
"""
import numpy as np

from fastgd.losses import vector_dot

# The penalty's L1 part is ``A S1 - B N``: when the alive weights are small against ``B`` the
# difference cancels, and the sums' own rounding (each call adds and removes values of the
# size of ``B / A``) accumulates over calls. A bound of both errors is kept; when it exceeds
# this relative precision of a penalty term, the sums are recomputed from the runs (O(alive
# entries)), and if the cancellation alone still exceeds it, the driver restarts the map (an
# O(n_features) catch-up).
PRECISION = 1e-11
_EPS = float(np.finfo(np.float64).eps)

# Runs of one level merged at a time. Measured (per-sample SGD with L1, 1,000-row chunks at
# 12 nnz per row, 2^21 features): merging two runs of similar size cost 1.2 ms a call, as
# much as the kernel; four at a time, 0.6 ms.
MERGE_WAYS = 4


def _add_compensated(total, value):
    """``total = [sum, compensation]`` plus ``value`` (Neumaier's summation)."""
    s = total[0] + value
    if abs(total[0]) >= abs(value):
        total[1] += (total[0] - s) + value
    else:
        total[1] += (value - s) + total[0]
    total[0] = s


class LaggingNorms:
    """``N``, ``S1`` and ``S2`` of the alive entries (a coordinate and an output) of a deferred
    catch-up with L1, and the sorted runs that find the entries reaching zero."""

    def __init__(self, n_outputs):
        self.n_outputs = n_outputs
        self.runs = []  # (u sorted, entry c * K + k, clock at recording, pointer past the zeros, level)
        self.threshold = 0.0  # the largest B / A seen: an entry with u <= threshold is at zero
        self.count = 0
        self.s1 = [0.0, 0.0]
        self.s2 = [0.0, 0.0]
        self.errors = [0.0, 0.0]  # bounds of the absolute rounding errors of S1 and S2

    @classmethod
    def start(cls, coef, work):
        """The norms of ``coef``, every coordinate up to date (``A = 1, B = 0`` in every
        snapshot of ``work``): O(n_features log n_features), once per deferred state."""
        norms = cls(coef.shape[1])
        norms.insert(np.arange(coef.shape[0] - 1), coef, work)
        return norms

    def snapshot(self):
        return list(self.runs), self.threshold, self.count, list(self.s1), list(self.s2), list(self.errors)

    def restore(self, snapshot):
        runs, self.threshold, self.count, s1, s2, errors = snapshot
        self.runs, self.s1, self.s2, self.errors = list(runs), list(s1), list(s2), list(errors)

    def copy(self):
        other = LaggingNorms(self.n_outputs)
        other.restore(self.snapshot())
        return other

    def _u(self, rows, coef, work):
        """``u`` of every entry of the coordinate rows ``rows``, as one flat array (row-major)."""
        snap = work[rows]
        w = np.abs(coef[rows].astype(np.float64, copy=False))
        with np.errstate(over="ignore"):
            return ((w + snap[:, 2:3]) / snap[:, 1:2]).ravel(), snap[:, 0]

    def _count(self, u, sign):
        self.count += sign * len(u)
        if len(u) == 0:
            return
        with np.errstate(over="ignore"):  # (an overflowing penalty is reported as such by the driver)
            s1, s2 = float(np.sum(u)), vector_dot(u, u)
        _add_compensated(self.s1, sign * s1)
        _add_compensated(self.s2, sign * s2)
        grow = _EPS * (np.log2(len(u)) + 2.0)  # (pairwise summation; u >= 0)
        self.errors[0] += grow * s1
        self.errors[1] += grow * s2

    def resum(self, work):
        """Recompute ``N``, ``S1`` and ``S2`` from the runs' alive entries (after
        :meth:`advance`), dropping the rounding the running sums gathered."""
        alive = [u[ptr:][work[self._rows(entry[ptr:]), 0] == clock[ptr:]] for u, entry, clock, ptr, _ in self.runs]
        u = np.concatenate(alive) if alive else np.zeros(0)
        self.count, self.s1, self.s2, self.errors = 0, [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
        self._count(u, 1)

    def advance(self, A, B, work):
        """Drop from the sums the entries that the map ``(A, B)`` has taken to zero."""
        with np.errstate(over="ignore"):
            t = float(B / A)
        if not t > self.threshold:  # (B / A may round a hair below an earlier value)
            return
        self.threshold = t
        K = self.n_outputs
        runs = []
        for u, entry, clock, ptr, level in self.runs:
            end = int(np.searchsorted(u, t, side="right"))
            if end > ptr:
                part = slice(ptr, end)
                current = work[self._rows(entry[part]), 0] == clock[part]
                self._count(u[part][current], -1)
            if end < len(u):
                runs.append((u, entry, clock, max(ptr, end), level))
        self.runs = runs

    def alive(self, rows, coef, work):
        """The ``u`` of the alive entries of the coordinate rows ``rows`` (each once), taken
        before a call touches them (after :meth:`advance` to the current map), for
        :meth:`insert` to drop from the sums once the call has succeeded."""
        u, _ = self._u(rows, coef, work)
        return u[u > self.threshold]

    def insert(self, rows, coef, work, departing=()):
        """Drop ``departing`` (see :meth:`alive`) from the sums, then add the alive entries of
        the coordinate rows ``rows`` (each once, just brought up to date), and a run of them."""
        self._count(np.asarray(departing, dtype=np.float64), -1)
        K = self.n_outputs
        u, clock = self._u(rows, coef, work)
        alive = u > self.threshold
        u = u[alive]
        entry = (np.asarray(rows, dtype=np.int64)[:, None] * K + np.arange(K)).ravel()[alive]
        clock = np.repeat(clock, K)[alive]
        self._count(u, 1)
        order = np.argsort(u)  # (not "stable": numpy's vectorised sort is several times faster)
        self.runs.append((u[order], entry[order], clock[order], 0, 0))
        self._merge(work)

    def _rows(self, entry):
        return entry if self.n_outputs == 1 else entry // self.n_outputs

    def _merge(self, work):
        runs = self.runs
        level = 0
        while len(runs) >= MERGE_WAYS and all(r[4] == level for r in runs[-MERGE_WAYS:]):
            parts = runs[-MERGE_WAYS:]
            del runs[-MERGE_WAYS:]
            u = np.concatenate([r[0][r[3]:] for r in parts])
            entry = np.concatenate([r[1][r[3]:] for r in parts])
            clock = np.concatenate([r[2][r[3]:] for r in parts])
            current = work[self._rows(entry), 0] == clock  # superseded entries go
            u, entry, clock = u[current], entry[current], clock[current]
            order = np.argsort(u, kind="stable")  # (sorted runs: timsort merges them in about linear time)
            level += 1
            runs.append((u[order], entry[order], clock[order], 0, level))

    def _sums(self, A, B):
        """``sum |w|`` and ``sum w**2`` at ``(A, B)``, and bounds of their absolute errors."""
        A, B = float(A), float(B)  # (Python floats: inf or nan on overflow, no warning)
        s1 = self.s1[0] + self.s1[1]
        s2 = self.s2[0] + self.s2[1]
        n = self.count
        abs_sum = A * s1 - B * n
        sq_sum = A * A * s2 - 2.0 * A * B * s1 + B * B * n
        e1, e2 = self.errors
        abs_error = A * e1 + 4.0 * _EPS * (A * s1 + B * n)
        sq_error = A * A * e2 + 2.0 * A * B * e1 + 6.0 * _EPS * (A * A * s2 + 2.0 * A * B * s1 + B * B * n)
        return abs_sum, sq_sum, abs_error, sq_error

    def penalty(self, A, B, l2, l1):
        """``l1 * sum |w| + l2 / 2 * sum w**2`` at the map ``(A, B)`` (after :meth:`advance`)."""
        abs_sum, sq_sum, _, _ = self._sums(A, B)
        value = 0.0
        if l1 > 0:
            value += l1 * max(abs_sum, 0.0)
        if l2 > 0:
            value += 0.5 * l2 * max(sq_sum, 0.0)
        return value

    def imprecise(self, A, B, l2, l1):
        """True when :meth:`penalty` at ``(A, B)`` may be off by more than :data:`PRECISION`
        of its value (after :meth:`advance`). (The sum of squares cancels as the square of
        the ratio of ``B`` to the weights: with L2 the bound is reached sooner.)"""
        if self.count == 0:
            return False
        abs_sum, sq_sum, abs_error, sq_error = self._sums(A, B)
        error = (l1 * abs_error if l1 > 0 else 0.0) + (0.5 * l2 * sq_error if l2 > 0 else 0.0)
        return not error <= PRECISION * self.penalty(A, B, l2, l1)

    def settle(self, A, B, work, l2, l1):
        """Advance to ``(A, B)`` and recompute the sums if they may have lost the precision
        (:meth:`imprecise`). Returns False when they still may have: the cancellation itself
        is too large, and only a restart of the map helps."""
        self.advance(A, B, work)
        if self.imprecise(A, B, l2, l1):
            self.resum(work)
        return not self.imprecise(A, B, l2, l1)


def touched_rows(X, rows):
    """The coordinates that the CSR rows ``rows`` of ``X`` store, each once (sorted)."""
    if len(rows) == X.shape[0]:
        indices = X.indices[X.indptr[0]:X.indptr[-1]]
    else:
        indices = X[rows].indices
    # (np.unique hashes integers: 20x slower than a sort here, 12,000 indices in 2^21)
    indices = np.sort(indices).astype(np.intp, copy=False)
    first = np.empty(len(indices), dtype=bool)
    first[:1] = True
    np.not_equal(indices[1:], indices[:-1], out=first[1:])
    return indices[first]

