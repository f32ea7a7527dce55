"""Training over data that does not fit in memory: several passes of ``partial_fit`` over chunks.

:func:`fit` is the loop a user would otherwise write by hand around ``partial_fit``::

    for each pass:
        for each chunk (in a new random order each pass):
            evaluate the chunk's held-out rows, then partial_fit on its other rows

with what such a loop needs to be trustworthy: a held-out part reported every pass, a
reproducible chunk order, a progress bar, and a binary cache so that passes after the first
do not parse text again. Every chunk is exactly one ``partial_fit`` call, so the result equals
the hand-written loop over the same chunks in the same order.
"""

import os
import shutil
import tempfile
import time

import numpy as np
import scipy.sparse as sp
from sklearn.base import is_classifier

from fastgd import losses
from fastgd._progress import make_bar

__all__ = ["fit"]


class _ChunkCache:
    """Parsed chunks saved as raw ``.npy`` arrays in a private temporary folder, so that
    passes after the first read them back in any order without parsing text again."""

    def __init__(self, directory=None):
        self.dir = tempfile.mkdtemp(prefix="fastgd-cache-", dir=directory)
        self.n_chunks = 0

    def _path(self, i, part):
        return os.path.join(self.dir, f"{i}.{part}.npy")

    def add(self, X, y):
        i = self.n_chunks
        if sp.issparse(X):
            X = sp.csr_matrix(X)
            np.save(self._path(i, "data"), X.data)
            np.save(self._path(i, "indices"), X.indices)
            np.save(self._path(i, "indptr"), X.indptr)
            np.save(self._path(i, "shape"), np.array(X.shape))
        else:
            np.save(self._path(i, "dense"), X)
        np.save(self._path(i, "y"), y, allow_pickle=y.dtype == object)
        self.n_chunks += 1

    def read_chunk(self, i):
        y = np.load(self._path(i, "y"), allow_pickle=True)
        if os.path.exists(self._path(i, "dense")):
            return np.load(self._path(i, "dense")), y
        parts = [np.load(self._path(i, part)) for part in ("data", "indices", "indptr", "shape")]
        return sp.csr_matrix(tuple(parts[:3]), shape=tuple(parts[3])), y

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _as_reader(source, chunk_size, format, options):
    from fastgd._file_readers import open_file

    if isinstance(source, (str, os.PathLike)):
        return open_file(source, chunk_size, format, **options)
    if options:
        raise TypeError(f"reader options {sorted(options)} apply only when source is a path.")
    if hasattr(source, "chunks"):
        return source
    if isinstance(source, (list, tuple)):
        return _ListSource(source)
    raise TypeError("source must be a file path, a reader from fastgd._file_readers, or a list of (X, y) "
                    f"chunks; got {type(source).__name__}.")


class _ListSource:
    """In-memory chunks (a list of ``(X, y)``): random access, nothing to cache."""

    def __init__(self, chunks):
        self._chunks = list(chunks)
        self.n_chunks = len(self._chunks)
        self.classes = None

    def read_chunk(self, i):
        return self._chunks[i]

    def chunks(self):
        return iter(self._chunks)

    def scan(self):
        self.classes = np.unique(np.concatenate([np.asarray(y) for _, y in self._chunks]))
        return self


def _holdout_mask(n_rows, fraction, seed, chunk_index):
    """Which rows of chunk ``chunk_index`` are held out: the same rows every pass."""
    if not fraction:
        return None
    return np.random.default_rng([seed, chunk_index]).random(n_rows) < fraction


def chunk_loss(estimator, X, y):
    """Sum over rows of the model's loss (no penalty) and the number of rows: the
    estimator's own training loss for fastgd models; for other estimators, the log loss of
    ``predict_proba`` (classifiers) or the squared error of ``predict``."""
    if not hasattr(estimator, "_loss_code"):
        if is_classifier(estimator) and hasattr(estimator, "predict_proba"):
            from sklearn.metrics import log_loss

            return float(log_loss(y, estimator.predict_proba(X), labels=estimator.classes_, normalize=False)), len(y)
        residual = np.asarray(estimator.predict(X), dtype=np.float64) - np.asarray(y, dtype=np.float64)
        return float(np.sum(residual * residual)), len(y)
    z = estimator._margins(X).reshape(X.shape[0], -1).astype(np.float64)
    if is_classifier(estimator):
        idx = np.searchsorted(estimator.classes_, y)
        idx = np.minimum(idx, len(estimator.classes_) - 1)
        if not np.array_equal(estimator.classes_[idx], y):
            unseen = np.setdiff1d(np.unique(y), estimator.classes_)
            raise ValueError(f"held-out labels {unseen.tolist()} are not among the classes {estimator.classes_.tolist()}.")
        y2 = idx.astype(np.float64).reshape(-1, 1)
    else:
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    value, _ = losses.BY_CODE[estimator._loss_code](z, y2)
    return float(np.sum(value)), len(value)


def fit(estimator, source, *, passes=1, holdout=None, shuffle=True, chunk_size=100_000, format="auto",
        classes=None, progress=False, random_state=None, cache=True, cache_dir=None, verbose=0, **options):
    """Train ``estimator`` with ``partial_fit`` over a data source, several passes.

    Parameters
    ----------
    estimator : fastgd.LinearRegression or fastgd.LogisticRegression (or any estimator with
        ``partial_fit``)
        Trained in place (continuing if already fitted); one ``partial_fit`` per chunk, so its
        ``batch_size``, optimizer and schedule apply within each chunk, and its step counter
        ``t_`` runs on across chunks and passes.
    source : str, path-like, reader, or list of (X, y)
        A file (read with :func:`fastgd.datasets.iter_chunks`), or chunks already in memory.
    passes : int, default=1
        Passes over the source.
    holdout : float in (0, 1) or None, default=None
        Fraction of the rows of every chunk held out (the same rows every pass, chosen at
        random from ``random_state``). Each pass reports their mean loss, computed
        progressively as Vowpal Wabbit does: a chunk's held-out rows are scored by the model
        just before it trains on the chunk's other rows (those of the very first chunk, just
        after, as there is no model before it).
    shuffle : bool, default=True
        Visit the chunks in a new random order every pass. A text file is read in file order
        on the first pass (it has no index to jump in); later passes come from the cache.
        Rows within a chunk are shuffled by the estimator's own ``shuffle``.
    chunk_size : int, default=100_000
        Rows per chunk when ``source`` is a path.
    format : str, default="auto"
        The file format when ``source`` is a path (see :func:`fastgd.datasets.iter_chunks`).
    classes : array-like or None, default=None
        All the classes (classifiers). When None and the classifier is not fitted yet, the
        source's labels are read first (for a text file, one extra read of the file).
    progress : bool or tqdm.tqdm, default=False
        Show a progress bar over the chunks of all passes (needs ``fastgd[progress]``).
    random_state : int, numpy Generator or None, default=None
        Seeds the chunk order and the held-out rows (not the estimator's own randomness).
    cache : bool, default=True
        With several passes over a text file, save the parsed chunks as binary arrays in a
        temporary folder (deleted at the end) and read them back on later passes.
    cache_dir : str or None, default=None
        Where the cache folder goes (default: the system's temporary folder).
    verbose : int, default=0
        Print one line per pass.
    **options
        Reader options when ``source`` is a path (``n_features``, ``target``, ``hash_bits``, ...).

    Returns
    -------
    estimator
        The fitted estimator. ``estimator.pass_history_`` lists one dict per pass: ``pass``,
        ``rows`` (trained), ``train_loss`` (mean over the pass of each chunk's running loss),
        ``holdout_rows``, ``holdout_loss`` (mean loss, no penalty; None without holdout),
        ``holdout_score`` (the estimator's ``score`` on the held-out rows) and ``seconds``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import LogisticRegression
    >>> from fastgd import stream
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((600, 5)); y = (X[:, 0] > 0).astype(int)
    >>> chunks = [(X[i:i + 100], y[i:i + 100]) for i in range(0, 600, 100)]
    >>> clf = stream.fit(LogisticRegression(learning_rate=0.1, batch_size=10, random_state=0), chunks,
    ...                  passes=3, holdout=0.2, random_state=0)
    >>> [round(h["holdout_score"], 2) > 0.9 for h in clf.pass_history_]
    [True, True, True]
    """
    if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)) or passes < 1:
        raise ValueError(f"passes must be a positive integer; got {passes!r}.")
    if holdout is not None and not (isinstance(holdout, (float, int)) and 0 < holdout < 1):
        raise ValueError(f"holdout must be a fraction in (0, 1) or None; got {holdout!r}.")
    reader = _as_reader(source, chunk_size, format, options)
    rng = np.random.default_rng(random_state)
    seed = int(rng.integers(2**63))
    fitted = hasattr(estimator, "classes_") or hasattr(estimator, "coef_")
    if is_classifier(estimator) and classes is None and not fitted:
        classes = reader.scan().classes
    fit_kwargs = {} if classes is None or not is_classifier(estimator) else {"classes": classes}

    random_access = hasattr(reader, "read_chunk")
    chunk_cache = None
    if not random_access and passes > 1 and cache:
        chunk_cache = _ChunkCache(cache_dir)
    n_chunks = getattr(reader, "n_chunks", None)
    if n_chunks is None and getattr(reader, "n_rows", None):  # a text file already scanned
        n_chunks = -(-reader.n_rows // reader.chunk_size)
    bar = make_bar(progress, total=None if n_chunks is None else n_chunks * passes, desc="training", unit="chunk")
    history = []
    try:
        for p in range(passes):
            tic = time.perf_counter()
            if random_access or (chunk_cache is not None and p > 0):
                store = reader if random_access else chunk_cache
                n = store.n_chunks
                order = rng.permutation(n) if shuffle else np.arange(n)
                if bar is not None and bar.total is None:
                    bar.total = n * passes
                    bar.refresh()
                items = ((int(i), store.read_chunk(int(i))) for i in order)
            else:
                items = enumerate(reader.chunks())
            stats = {"rows": 0, "loss": 0.0, "h_rows": 0, "h_loss": 0.0, "h_correct": 0.0}
            for i, (X, y) in items:
                if p == 0 and chunk_cache is not None:
                    chunk_cache.add(X, y)
                _train_chunk(estimator, X, y, holdout, seed, i, fit_kwargs, stats)
                fit_kwargs = {}
                if bar is not None:
                    bar.update(1)
            if stats["rows"] == 0:
                raise ValueError("the source yielded no training rows (is it empty, or is holdout too large?).")
            entry = {"pass": p + 1, "rows": stats["rows"], "train_loss": stats["loss"] / stats["rows"],
                     "holdout_rows": stats["h_rows"],
                     "holdout_loss": stats["h_loss"] / stats["h_rows"] if stats["h_rows"] else None,
                     "holdout_score": stats["h_correct"] / stats["h_rows"] if stats["h_rows"] else None,
                     "seconds": time.perf_counter() - tic}
            history.append(entry)
            if bar is not None and entry["holdout_loss"] is not None:
                bar.set_postfix(holdout_loss=f"{entry['holdout_loss']:.5g}")
            if verbose:
                if bar is not None:
                    bar.write(format_pass(entry, passes))
                else:
                    print(format_pass(entry, passes), flush=True)
    finally:
        if chunk_cache is not None:
            chunk_cache.close()
        if bar is not None and progress is True:
            bar.close()
    estimator.pass_history_ = history
    return estimator


def _train_chunk(estimator, X, y, holdout, seed, chunk_index, fit_kwargs, stats):
    """Score the chunk's held-out rows, then one ``partial_fit`` on the rest; add to ``stats``."""
    if y is None:
        raise ValueError("the source has no labels to train on (a CSV without the target column, or an .npy "
                         "file without target=).")
    mask = _holdout_mask(X.shape[0], holdout, seed, chunk_index)
    held_out = None
    if mask is not None and mask.any():
        held_out = X[mask], y[mask]
        X, y = X[~mask], y[~mask]
    # The very first chunk has no model to score its held-out rows: they are scored after it.
    score_first = hasattr(estimator, "coef_")
    if held_out is not None and score_first:
        _score_held_out(estimator, *held_out, stats)
    if X.shape[0]:
        estimator.partial_fit(X, y, **fit_kwargs)
        stats["rows"] += X.shape[0]
        curve = getattr(estimator, "loss_curve_", None)
        if curve:
            stats["loss"] += curve[-1] * X.shape[0]
    if held_out is not None and not score_first and hasattr(estimator, "coef_"):
        _score_held_out(estimator, *held_out, stats)


def _score_held_out(estimator, X, y, stats):
    loss, n = chunk_loss(estimator, X, y)
    stats["h_loss"] += loss
    stats["h_rows"] += n
    stats["h_correct"] += estimator.score(X, y) * n


def format_pass(entry, passes):
    """One line describing a pass of :func:`fit` (what ``verbose`` and the command line print)."""
    line = (f"pass {entry['pass']}/{passes}: {entry['rows']} rows, train loss {entry['train_loss']:.6g}")
    if entry["holdout_loss"] is not None:
        line += (f", holdout loss {entry['holdout_loss']:.6g} (score {entry['holdout_score']:.4g}, "
                 f"{entry['holdout_rows']} rows)")
    return line + f", {entry['seconds']:.2f} s"
