"""Data sets for the sparse world: the svmlight / libsvm text format and a sparse generator.

The svmlight format (``<label> <index>:<value> ...`` per line) is the standard interchange
format of large sparse linear problems (LIBSVM, Vowpal Wabbit's ancestors, the RCV1 and
criteo benchmarks). Parsing is scikit-learn's compiled loader; fastgd adds the dtype and
layout its kernels want (CSR, float32 or float64, no further copy at ``fit``).
"""

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file, load_svmlight_file

__all__ = ["load_svmlight", "dump_svmlight", "make_sparse_classification", "iter_chunks"]


def load_svmlight(f, *, n_features=None, dtype=np.float64, zero_based="auto", multilabel=False):
    """Load an svmlight / libsvm file as a CSR matrix ready for fastgd's kernels.

    Parameters
    ----------
    f : str, path-like or binary file object
        The file (``.gz`` and ``.bz2`` are decompressed on the fly).
    n_features : int or None, default=None
        Number of columns; by default the largest index seen (pass it when loading a test
        file whose largest index may be smaller than the training file's).
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Dtype of ``X``; float32 halves memory and the model trains in float32.
    zero_based : bool or "auto", default="auto"
        Whether column indices start at 0 (``"auto"`` guesses from the file).
    multilabel : bool, default=False

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features)
        Sorted indices, C-contiguous parts, in ``dtype``.
    y : ndarray of shape (n_samples,)

    Examples
    --------
    >>> import io
    >>> from fastgd.datasets import load_svmlight
    >>> X, y = load_svmlight(io.BytesIO(b"1 1:0.5 3:2\\n0 2:1\\n"), zero_based=False)
    >>> X.shape, X.nnz, y.tolist()
    ((2, 3), 3, [1.0, 0.0])
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64; got {dtype}.")
    X, y = load_svmlight_file(f, n_features=n_features, dtype=dtype, zero_based=zero_based,
                              multilabel=multilabel)
    X = sp.csr_matrix(X)
    X.sort_indices()
    return X, y


def dump_svmlight(X, y, f, *, zero_based=True):
    """Write ``(X, y)`` in the svmlight format (scikit-learn's writer)."""
    dump_svmlight_file(X, y, f, zero_based=zero_based)


def make_sparse_classification(n_samples=10_000, n_features=100_000, nnz_per_row=20,
                               n_informative=None, noise=0.1, dtype=np.float64, random_state=None):
    """A sparse binary classification problem shaped like text or click logs.

    Each row has ``nnz_per_row`` non-zero features drawn with a Zipf-like popularity (a few
    features are very common, most are rare); labels come from a sparse true weight vector
    on ``n_informative`` features (drawn with the same popularity, so the signal is
    learnable) with logistic noise.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features)
    y : ndarray of int of shape (n_samples,)
    w_true : ndarray of shape (n_features,)
    """
    rng = np.random.default_rng(random_state)
    popularity = 1.0 / np.arange(1, n_features + 1) ** 0.8
    popularity /= popularity.sum()
    cols = rng.choice(n_features, size=(n_samples, nnz_per_row), p=popularity)
    cols.sort(axis=1)
    data = (rng.random((n_samples, nnz_per_row)) + 0.5).astype(dtype)
    indptr = np.arange(0, n_samples * nnz_per_row + 1, nnz_per_row)
    X = sp.csr_matrix((data.ravel(), cols.ravel(), indptr), shape=(n_samples, n_features))
    X.sum_duplicates()
    n_informative = n_informative or max(n_features // 100, 10)
    w_true = np.zeros(n_features)
    informative = rng.choice(n_features, size=n_informative, replace=False, p=popularity)
    w_true[informative] = rng.standard_normal(n_informative) * 2.0
    margin = X @ w_true
    margin = (margin - margin.mean()) / (margin.std() + 1e-12) * 3.0
    y = (margin + noise * rng.logistic(size=n_samples) > 0).astype(int)
    return X, y, w_true


def iter_chunks(path, chunk_size=100_000, format="auto", **options):
    """Yield a data file as ``(X, y)`` chunks of ``chunk_size`` rows, never loading it whole.

    Parameters
    ----------
    path : str or path-like
        The file. ``format="auto"`` decides by the name: ``.svm``, ``.svmlight``, ``.libsvm``,
        ``.txt``, ``.dat`` are svmlight; ``.csv``, ``.tsv`` CSV; ``.npy`` a NumPy array. A
        ``.gz`` or ``.bz2`` suffix (text formats) is decompressed on the fly.
    chunk_size : int, default=100_000
        Rows per chunk (the last chunk may be shorter).
    format : {"auto", "svmlight", "csv", "npy"}, default="auto"
    **options
        svmlight: ``n_features``, ``zero_based`` (True, False, "auto"), ``dtype``. When
        ``n_features`` or the index base is not given, the file is read once first to find
        them (every chunk must have the same width).
        CSV: ``target`` (column name or position, default 0), ``categorical`` (columns to hash
        even if numeric), ``hash_bits`` (string columns are hashed with scikit-learn's
        ``FeatureHasher`` into ``2**hash_bits`` columns; default 18), ``sep``, ``header``,
        ``dtype``. Needs pandas (``pip install fastgd[csv]``).
        npy: ``target``, the labels (a ``.npy`` path, memory-mapped too, or an array).

    Yields
    ------
    X : ndarray or scipy.sparse.csr_matrix of shape (rows, n_features)
        CSR for svmlight and for CSV with hashed columns; for ``.npy``, a view of the
        memory-mapped file (no copy).
    y : ndarray of shape (rows,) or None

    Examples
    --------
    >>> import os, tempfile
    >>> from fastgd.datasets import iter_chunks
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.svm")
    >>> with open(path, "w") as f:
    ...     _ = f.write("1 1:0.5 3:2\\n0 2:1\\n1 3:1\\n")
    >>> [(X.shape, y.tolist()) for X, y in iter_chunks(path, chunk_size=2)]
    [((2, 3), [1.0, 0.0]), ((1, 3), [1.0])]
    """
    from fastgd._file_readers import open_file

    return open_file(path, chunk_size, format, **options).chunks()
