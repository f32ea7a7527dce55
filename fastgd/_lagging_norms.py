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
there are O(log) runs), and a pointer per run passes the entries already at zero. An entry is current while its coordinate's clock
(``lazy_work[:, 0]``) is the one it was recorded with: a touch moves the clock, and the
superseded entry is skipped when it is reached. Runs are never changed in place, so a
snapshot (for undoing a failed call) is a list of references.
"""
import numpy as np

from fastgd.losses import vector_dot

# The penalty's L1 part is ``A S1 - B N``. When the alive weights are small against ``B`` the
# difference cancels: past this ratio of ``A S1`` to ``sum |w|`` (or of ``A**2 S2`` to
# ``sum w**2``, its square) the driver restarts the map (an O(n_features) catch-up).
MAX_CANCELLATION = 1e4

# Runs of one level merged at a time. Measured (per-sample SGD with L1, 1,000-row chunks at
# 12 nnz per row, 2^21 features): merging two runs of similar size cost 1.2 ms a call, as
# much as the kernel; four at a time, a third of that.
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

    @classmethod
    def start(cls, coef, work):
        """The norms of ``coef``, every coordinate up to date (``A = 1, B = 0`` in every
        snapshot of ``work``): O(n_features log n_features), once per deferred state."""
        norms = cls(coef.shape[1])
        norms.insert(np.arange(coef.shape[0] - 1), coef, work)
        return norms

    def snapshot(self):
        return list(self.runs), self.threshold, self.count, list(self.s1), list(self.s2)

    def restore(self, snapshot):
        runs, self.threshold, self.count, s1, s2 = snapshot
        self.runs, self.s1, self.s2 = list(runs), list(s1), list(s2)

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
        with np.errstate(over="ignore"):  # (an overflowing penalty is reported as such by the driver)
            _add_compensated(self.s1, sign * float(np.sum(u)))
            _add_compensated(self.s2, sign * vector_dot(u, u))

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
        A, B = float(A), float(B)  # (Python floats: inf or nan on overflow, no warning)
        s1 = self.s1[0] + self.s1[1]
        s2 = self.s2[0] + self.s2[1]
        return A * s1, A * A * s2, A * s1 - B * self.count, A * A * s2 - 2.0 * A * B * s1 + B * B * self.count

    def penalty(self, A, B, l2, l1):
        """``l1 * sum |w| + l2 / 2 * sum w**2`` at the map ``(A, B)`` (after :meth:`advance`)."""
        _, _, abs_sum, sq_sum = self._sums(A, B)
        value = 0.0
        if l1 > 0:
            value += l1 * max(abs_sum, 0.0)
        if l2 > 0:
            value += 0.5 * l2 * max(sq_sum, 0.0)
        return value

    def cancels(self, A, B):
        """True when the sums at ``(A, B)`` lose more than :data:`MAX_CANCELLATION` of their
        precision to cancellation (after :meth:`advance`)."""
        if self.count == 0:
            return False
        a_s1, a2_s2, abs_sum, sq_sum = self._sums(A, B)
        return not (abs_sum * MAX_CANCELLATION > a_s1 and sq_sum * MAX_CANCELLATION ** 2 > a2_s2)


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

