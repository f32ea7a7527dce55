"""Watching training: callbacks after every epoch, the progress bar and the recorded path.

A callback is any callable taking one :class:`EpochRecord`. The estimators call every callback
once after each epoch, in Python, between two kernel calls (the kernels never call back). A
callback that returns ``True`` stops training after that epoch, and the stop is reported as a
convergence stop is (``n_iter_`` epochs, no ``ConvergenceWarning``). An exception raised by a
callback fails the ``fit`` or ``partial_fit`` call: the estimator is left as it was before the
call, and the exception propagates unchanged.

>>> import numpy as np
>>> from fastgd import LinearRegression
>>> from fastgd.callbacks import History
>>> X = np.array([[1.0], [2.0]]); y = np.array([2.0, 4.0])
>>> history = History()
>>> reg = LinearRegression(optimizer="sgd", learning_rate=0.1, max_iter=100, tol=None,
...                        callbacks=[history, lambda record: record.loss < 0.1])
>>> reg.fit(X, y).n_iter_, history.losses.round(4).tolist()
(4, [10.0, 1.06, 0.1732, 0.0835])

To stop a fit from another thread (a user interface, a time-out handler), let a callback read
a flag: ``stop = threading.Event(); callbacks=[lambda record: stop.is_set()]``.
"""

import time
from dataclasses import dataclass, replace

import numpy as np

from fastgd import _contract as C
from fastgd._progress import make_bar
from fastgd.schedules import decode_lr

__all__ = ["EpochRecord", "History", "TimeLimit"]

#: Largest per-step path (bytes) ``record_path="step"`` accepts; above it, per-epoch recording
#: is the tool (one row per epoch instead of one per step).
STEP_PATH_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class EpochRecord:
    """What a callback learns after an epoch. Read-only.

    Attributes
    ----------
    epoch : int
        Epochs completed, counted over the estimator's whole training (``n_iter_`` so far:
        ``partial_fit`` continues the count).
    steps : int
        Optimizer steps taken so far (the estimator's ``t_``).
    loss : float
        The epoch's training objective (the value appended to ``loss_curve_``).
    validation_loss : float or None
        The held-out loss after the epoch (the weighted mean loss on the validation set, the
        signal early stopping watches) with ``early_stopping=True``, else None.
    learning_rate : float
        The rate of the epoch's last step: the base rate as the schedule and any warm-up or
        plateau reduction set it (for a per-epoch schedule, the epoch's rate).
    elapsed : float
        Seconds since the ``fit`` or ``partial_fit`` call started.
    coef, intercept : ndarray (read-only) or float
        The parameters after the epoch, in the layout of ``coef_`` and ``intercept_``. They
        are views of the parameters being trained, so they change as training goes on: copy
        them to keep them (:class:`History` does with ``keep_coef=True``).
    """

    epoch: int
    steps: int
    loss: float
    validation_loss: object
    learning_rate: float
    elapsed: float
    coef: np.ndarray
    intercept: object


class History:
    """A callback that keeps the record of every epoch.

    Parameters
    ----------
    keep_coef : bool, default=False
        Also keep a copy of the coefficients of every epoch (memory: one ``coef_`` and
        ``intercept_`` per epoch). Without it the records hold ``coef=None`` and
        ``intercept=None``; the estimator's ``record_path`` keeps the path the same way.

    Attributes
    ----------
    records : list of EpochRecord
    """

    def __init__(self, keep_coef=False):
        self.keep_coef = keep_coef
        self.records = []

    def __call__(self, record):
        if self.keep_coef:
            kept = replace(record, coef=np.array(record.coef), intercept=np.array(record.intercept))
        else:
            kept = replace(record, coef=None, intercept=None)
        self.records.append(kept)
        return False

    def _column(self, name):
        return np.array([getattr(r, name) for r in self.records], dtype=np.float64)

    @property
    def epochs(self):
        """Epoch numbers, from 1."""
        return np.array([r.epoch for r in self.records], dtype=np.int64)

    @property
    def losses(self):
        """The learning curve: training objective per epoch."""
        return self._column("loss")

    @property
    def validation_losses(self):
        """Held-out loss per epoch (NaN where there was none)."""
        return np.array([np.nan if r.validation_loss is None else r.validation_loss for r in self.records])

    @property
    def learning_rates(self):
        """Learning rate of each epoch's last step."""
        return self._column("learning_rate")

    @property
    def elapsed(self):
        """Seconds from the start of the fit to the end of each epoch."""
        return self._column("elapsed")


class TimeLimit:
    """A callback that stops training once ``seconds`` have elapsed since the fit started.

    The epoch that crosses the limit completes (kernels are not interrupted), so a fit takes
    at most ``seconds`` plus one epoch.
    """

    def __init__(self, seconds):
        if not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ValueError(f"TimeLimit seconds must be a positive number; got {seconds!r}.")
        self.seconds = seconds

    def __call__(self, record):
        return record.elapsed >= self.seconds

    def __repr__(self):
        return f"TimeLimit(seconds={self.seconds!r})"


def check_callbacks(callbacks):
    """The callables of an estimator's ``callbacks`` parameter, as a tuple."""
    if callbacks is None:
        return ()
    if callable(callbacks):
        return (callbacks,)
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables taking an EpochRecord; got {cb!r}.")
    return callbacks


def _read_only(a):
    if isinstance(a, np.ndarray):
        a = a.view()
        a.flags.writeable = False
    return a


class TrainingMonitor:
    """Everything one ``fit`` or ``partial_fit`` call does in Python after each epoch:
    callbacks, the progress bar and the recorded path.

    The epoch driver (``fastgd._solver``) calls :meth:`after_epoch` after every epoch and, when
    :attr:`records_steps`, runs the epoch through :meth:`run_epoch_by_steps`. The caller
    closes the monitor (the bar) when training ends, however it ends.

    Parameters
    ----------
    coef : ndarray of shape (n_features + 1, n_outputs)
        The parameters being trained (the kernel layout), at the start of the call.
    coef_views : callable
        Kernel-layout parameters -> ``(coef, intercept)`` views in the estimator's public
        layout.
    callbacks, progress, record_path
        The estimator's parameters.
    n_epochs : int
        Epochs this call runs at most (the bar's total).
    steps_per_epoch : int
        Optimizer steps per epoch (bounds the per-step path's memory).
    previous_path : tuple of two ndarrays or None
        ``(coef_path_, intercept_path_)`` to continue (``partial_fit``); None starts the path at
        ``coef``.
    desc : str or None
        The bar's label.
    verbose : int
        Print a line when a callback stops training.
    """

    def __init__(self, coef, coef_views, *, callbacks=None, progress=False, record_path=False, n_epochs=1,
                 steps_per_epoch=1, previous_path=None, desc=None, verbose=0):
        self.callbacks = check_callbacks(callbacks)
        if record_path not in (False, True, "epoch", "step"):
            raise ValueError(f"record_path must be False, True, 'epoch' or 'step'; got {record_path!r}.")
        self.record = {False: None, True: "epoch"}.get(record_path, record_path)
        self.coef_views = coef_views
        self.verbose = verbose
        self.start = time.perf_counter()
        self.path = []
        self._pending = []
        if self.record is not None:
            rows = n_epochs * (steps_per_epoch if self.record == "step" else 1)
            nbytes = rows * coef.size * coef.itemsize
            if self.record == "step" and nbytes > STEP_PATH_MAX_BYTES:
                raise ValueError(
                    f"record_path='step' would keep up to {rows} parameter vectors of {coef.size} values "
                    f"({nbytes / 1e9:.1f} GB) for {n_epochs} epochs of {steps_per_epoch} steps; it is meant "
                    "for small problems. Use record_path=True (one row per epoch), fewer epochs (max_iter) "
                    "or a larger batch_size."
                )
            if previous_path is not None:
                self.path = [tuple(row) for row in zip(*previous_path)]
            else:
                self.path = [self._params(coef)]
        if isinstance(progress, np.bool_):
            progress = bool(progress)
        # Last: a bar is only made once nothing else can fail, so the caller's close() always runs.
        self.bar = make_bar(progress, total=n_epochs, desc=desc)
        self._own_bar = progress is True

    @property
    def records_steps(self):
        """True when the epoch is to be run one step per kernel call, to record each step."""
        return self.record == "step"

    def _params(self, coef):
        c, b = self.coef_views(coef)
        return np.array(c), np.array(b)

    def run_epoch_by_steps(self, run_epoch, order, batch_size, coef):
        """Run one epoch as one kernel call per batch, keeping the parameters after each step.

        ``run_epoch(order)`` runs the kernel on a sample order and returns ``(status, loss
        sum)``. The batches are those one call over the whole ``order`` makes, in the same order
        (the schedule's clock ``t`` advances the same way), so the steps are the same.
        """
        self._pending = []
        loss_sum = 0.0
        status = C.STATUS_OK
        for start in range(0, len(order), batch_size):
            status, part = run_epoch(order[start:start + batch_size])
            loss_sum += part
            if status != C.STATUS_OK:
                break
            self._pending.append(self._params(coef))
        return status, loss_sum

    def after_epoch(self, ts, settings):
        """Record the epoch that just ended; returns True if a callback asks to stop."""
        if self.record == "epoch":
            self.path.append(self._params(ts.coef))
        elif self.record == "step":
            self.path.extend(self._pending)
            self._pending = []
        loss = ts.loss_curve[-1]
        score = float(ts.validation_scores[-1]) if settings.validation_score is not None else None
        if self.bar is not None:
            postfix = {"loss": f"{loss:.4g}"}
            if score is not None:
                postfix["validation"] = f"{score:.4g}"
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        if not self.callbacks:
            return False
        coef, intercept = self.coef_views(ts.coef)
        record = EpochRecord(
            epoch=ts.n_iter, steps=int(ts.t[0]), loss=float(loss), validation_loss=score,
            learning_rate=float(decode_lr(settings.codes, settings.hp, ts.t[0] - 1, settings.hp[C.H_EPOCH])),
            elapsed=time.perf_counter() - self.start, coef=_read_only(coef), intercept=_read_only(intercept),
        )
        stoppers = [cb for cb in self.callbacks if cb(record)]  # every callback sees every epoch
        if stoppers and self.verbose:
            print(f"Epoch {ts.n_iter}: training stopped by callback {stoppers[0]!r}", flush=True)
        return bool(stoppers)

    def path_arrays(self):
        """``(coef_path, intercept_path)`` stacked, or None when no path is recorded."""
        if self.record is None:
            return None
        coefs, intercepts = zip(*self.path)
        return np.stack(coefs), np.stack(intercepts)

    def close(self):
        """Close the bar if the monitor made it (a bar passed in belongs to its owner)."""
        if self.bar is None:
            return
        if self._own_bar:
            self.bar.close()
        else:
            self.bar.refresh()
