"""Readers that yield a data file in chunks of rows, never holding the whole file in memory.

Three formats, each behind the same small interface (``chunks()``, ``scan()``, ``spec``):

- svmlight / libsvm text (``.gz`` and ``.bz2`` decompressed on the fly): each chunk of lines
  is parsed by a compiled parser (:mod:`fastgd._svmlight_parser`) into a CSR matrix;
- CSV (optionally compressed), read by pandas in chunks: numeric columns become features as
  they are, string (categorical) columns are hashed with scikit-learn's ``FeatureHasher``
  into ``2**hash_bits`` columns (tokens ``"column=value"``);
- ``.npy``: memory-mapped, each chunk a view of the file (no copy, no anonymous memory).

A chunk's column count must be the same for every chunk, and an svmlight file's index base
must be decided once for the whole file (scikit-learn's ``zero_based="auto"`` would guess per
chunk). When they are not given, :meth:`SvmlightFile.scan` reads the file once to find them.
``spec`` records everything that decides how rows become features, so that a file read later
(a test file, the input of ``predict``) is encoded exactly the same way.
"""

import bz2
import gzip
import itertools
import os

import numpy as np
import scipy.sparse as sp

FORMATS = ("svmlight", "csv", "npy")
_SUFFIXES = {".svm": "svmlight", ".svmlight": "svmlight", ".libsvm": "svmlight", ".txt": "svmlight",
             ".dat": "svmlight", ".csv": "csv", ".tsv": "csv", ".npy": "npy"}
DEFAULT_HASH_BITS = 18


class DataFileError(ValueError):
    """A data file that cannot be read as asked (missing, wrong format, a bad row)."""


def guess_format(path):
    """The format of ``path`` from its name (a ``.gz`` / ``.bz2`` suffix is looked through)."""
    name = os.fspath(path).lower()
    for compressed in (".gz", ".bz2"):
        if name.endswith(compressed):
            name = name[: -len(compressed)]
    fmt = _SUFFIXES.get(os.path.splitext(name)[1])
    if fmt is None:
        raise DataFileError(f"cannot tell the format of {os.fspath(path)!r} from its name; pass "
                            f"format= one of {FORMATS}.")
    return fmt


def _open_binary(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileError(f"{path}: no such file.")
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64; got {dtype}.")
    return dtype


def _check_chunk_size(chunk_size):
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer (rows per chunk); got {chunk_size!r}.")
    return int(chunk_size)


class SvmlightFile:
    """An svmlight / libsvm file read ``chunk_size`` lines at a time.

    ``n_features`` and ``zero_based`` (True, False or "auto") are resolved by :meth:`scan`
    when not given: the largest index seen, and whether any index is 0.
    """

    format = "svmlight"

    def __init__(self, path, chunk_size, *, n_features=None, zero_based="auto", dtype=np.float64):
        self.path = os.fspath(path)
        self.chunk_size = _check_chunk_size(chunk_size)
        self.n_features = None if n_features is None else int(n_features)
        if zero_based not in (True, False, "auto"):
            raise ValueError(f"zero_based must be True, False or 'auto'; got {zero_based!r}.")
        self.zero_based = zero_based
        self.dtype = _check_dtype(dtype)
        self.classes = None
        self.n_rows = None

    @property
    def spec(self):
        return {"format": self.format, "n_features": self.n_features, "zero_based": self.zero_based}

    def _parse(self, lines, first_line, n_features, zero_based):
        """CSR ``(X, y)`` of a chunk of lines (:mod:`fastgd._svmlight_parser`)."""
        from fastgd._svmlight_parser import BAD_LINE, OK, parse_chunk

        raw = b"".join(lines)
        width = -1 if n_features is None else n_features
        status, arrays, bad = parse_chunk(raw, 0 if zero_based else 1, width, self.dtype)
        if status == BAD_LINE:
            raise DataFileError(f"{self.path}: line {first_line + bad + 1} is not valid svmlight "
                                "('<label> <index>:<value> ...').")
        if status != OK:
            raise DataFileError(f"{self.path}: line {first_line + bad + 1} has a feature index outside "
                                f"[{0 if zero_based else 1}, {width - (not zero_based)}]"
                                + (f" (n_features={n_features})." if n_features is not None else "."))
        data, indices, indptr, y = arrays
        X = sp.csr_matrix((data, indices, indptr), shape=(len(y), max(width, 0) if width >= 0 else
                                                          (int(indices.max()) + 1 if len(indices) else 0)))
        X.sort_indices()
        return X, y

    def _line_chunks(self):
        with _open_binary(self.path) as f:
            try:
                row = 0
                while True:
                    lines = list(itertools.islice(f, self.chunk_size))
                    if not lines:
                        return
                    yield row, lines
                    row += len(lines)
            except (OSError, EOFError) as exc:  # a corrupt or truncated compressed file
                raise DataFileError(f"{self.path}: cannot be read ({exc}).") from None

    def scan(self):
        """Read the file once: number of rows, labels, and the unresolved index base and width."""
        max_index, min_index, n_rows, labels = -1, None, 0, set()
        for row, lines in self._line_chunks():
            # Parsed one-based-agnostic (zero_based=True): the raw indices as written.
            X, y = self._parse(lines, row, None, True)
            if X.nnz:
                max_index = max(max_index, int(X.indices.max()))
                low = int(X.indices.min())
                min_index = low if min_index is None else min(min_index, low)
            n_rows += X.shape[0]
            labels.update(np.unique(y).tolist())
        if n_rows == 0:
            raise DataFileError(f"{self.path}: the file has no rows.")
        if self.zero_based == "auto":
            self.zero_based = min_index == 0 if min_index is not None else True
        width = max_index + 1 if self.zero_based else max_index
        if self.n_features is None:
            self.n_features = max(width, 1)
        elif width > self.n_features:
            raise DataFileError(f"{self.path}: has feature index {max_index}, beyond n_features={self.n_features}.")
        self.n_rows = n_rows
        self.classes = np.array(sorted(labels))
        return self

    def chunks(self):
        """Yield ``(X, y)``: X a sorted CSR matrix of ``n_features`` columns, y float64."""
        if self.n_features is None or self.zero_based == "auto":
            self.scan()
        for row, lines in self._line_chunks():
            yield self._parse(lines, row, self.n_features, self.zero_based)


class CSVFile:
    """A CSV file read by pandas ``chunk_size`` rows at a time.

    The schema is decided once, from the first ``chunk_size`` rows (or given by ``spec``):
    numeric columns become features as they are, the others (and those named in
    ``categorical``) are hashed into ``2**hash_bits`` columns after the numeric ones. The
    target is the column ``target`` (a name, or a position; default the first column); a file
    without it (the input of ``predict``) yields ``y = None``.
    """

    format = "csv"

    def __init__(self, path, chunk_size, *, target=0, categorical=None, hash_bits=None, sep=None,
                 header=True, dtype=np.float64, spec=None):
        self.path = os.fspath(path)
        self.chunk_size = _check_chunk_size(chunk_size)
        self.dtype = _check_dtype(dtype)
        name = self.path.lower().removesuffix(".gz").removesuffix(".bz2")
        self.sep = sep if sep is not None else ("\t" if name.endswith(".tsv") else ",")
        self.header = bool(header)
        self.classes = None
        self.n_rows = None
        if spec is not None:
            self._schema = dict(spec)
        else:
            if hash_bits is not None and not (isinstance(hash_bits, (int, np.integer)) and 1 <= hash_bits <= 30):
                raise ValueError(f"hash_bits must be an integer from 1 to 30; got {hash_bits!r}.")
            self._schema = self._infer_schema(target, list(categorical or []), hash_bits)

    def _pandas(self):
        try:
            import pandas
        except ImportError as exc:
            raise ImportError("reading CSV needs pandas: pip install fastgd[csv]") from exc
        return pandas

    def _read(self, **kwargs):
        pd = self._pandas()
        if not os.path.isfile(self.path):
            raise DataFileError(f"{self.path}: no such file.")
        return pd.read_csv(self.path, sep=self.sep, header=0 if self.header else None,
                           compression="infer", chunksize=self.chunk_size, **kwargs)

    def _infer_schema(self, target, categorical, hash_bits):
        pd = self._pandas()
        try:
            with self._read() as reader:
                head = next(iter(reader))
        except StopIteration:
            raise DataFileError(f"{self.path}: the file has no rows.") from None
        except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
            raise DataFileError(f"{self.path}: cannot be read as CSV ({exc}).") from None
        columns = [str(c) for c in head.columns]
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if not -len(columns) <= target < len(columns):
                raise DataFileError(f"{self.path}: target column {target} out of range ({len(columns)} columns).")
            target = columns[target]
        target = str(target)
        if target not in columns:
            raise DataFileError(f"{self.path}: no target column {target!r}; the columns are {columns}.")
        unknown = sorted(set(map(str, categorical)) - set(columns))
        if unknown:
            raise DataFileError(f"{self.path}: categorical columns {unknown} are not in the file {columns}.")
        head.columns = columns
        features = [c for c in columns if c != target]
        hashed = [c for c in features if c in categorical or not pd.api.types.is_numeric_dtype(head[c])]
        numeric = [c for c in features if c not in hashed]
        if hashed and hash_bits is None:
            hash_bits = DEFAULT_HASH_BITS
        return {"format": self.format, "columns": columns, "target": target, "numeric": numeric,
                "hashed": hashed, "hash_bits": hash_bits if hashed else None,
                "target_is_numeric": bool(pd.api.types.is_numeric_dtype(head[target]))}

    @property
    def spec(self):
        return dict(self._schema)

    @property
    def n_features(self):
        s = self._schema
        return len(s["numeric"]) + (2 ** s["hash_bits"] if s["hashed"] else 0)

    def _frames(self, usecols=None):
        pd = self._pandas()
        s = self._schema
        dtypes = {c: "float64" for c in s["numeric"]}
        dtypes.update({c: str for c in s["hashed"]})
        dtypes[s["target"]] = "float64" if s["target_is_numeric"] else str
        names = None if self.header else s["columns"]
        try:
            with self._read(names=names, dtype=dtypes, usecols=usecols, keep_default_na=True) as reader:
                row = 0
                for frame in reader:
                    yield row, frame
                    row += len(frame)
        except (ValueError, OSError, EOFError, pd.errors.ParserError) as exc:
            raise DataFileError(f"{self.path}: cannot be read with the schema of its first rows ({exc}).") from None

    def scan(self):
        """Read the target column once: number of rows and the labels."""
        target = self._schema["target"]
        labels, n_rows = set(), 0
        usecols = [target] if self.header else None
        for _, frame in self._frames(usecols=usecols):
            y = frame[target]
            if y.isna().any():
                raise DataFileError(f"{self.path}: missing values in the target column {target!r}.")
            labels.update(np.unique(y.to_numpy()).tolist())
            n_rows += len(frame)
        self.n_rows = n_rows
        self.classes = np.array(sorted(labels))
        return self

    def _encode(self, row, frame):
        from sklearn.feature_extraction import FeatureHasher

        s = self._schema
        missing = [c for c in s["numeric"] + s["hashed"] if c not in frame.columns]
        if missing:
            raise DataFileError(f"{self.path}: columns {missing} are missing (the model was trained with them).")
        numeric = frame[s["numeric"]].to_numpy(dtype=self.dtype)
        if numeric.size and not np.isfinite(numeric).all():
            bad_row, bad_col = np.argwhere(~np.isfinite(numeric))[0]
            raise DataFileError(f"{self.path}: row {row + bad_row + 1}, column {s['numeric'][bad_col]!r} is missing "
                                "or not finite; fill it in, or list the column as categorical.")
        if s["hashed"]:
            tokens = frame[s["hashed"]]
            present = tokens.notna().to_numpy()
            rows = ([f"{c}={v}" for c, v, ok in zip(s["hashed"], values, oks) if ok]
                    for values, oks in zip(tokens.to_numpy(dtype=object), present))
            hasher = FeatureHasher(n_features=2 ** s["hash_bits"], input_type="string", dtype=self.dtype)
            X = sp.hstack([sp.csr_matrix(numeric), hasher.transform(rows)], format="csr")
            X.sort_indices()
        else:
            X = np.ascontiguousarray(numeric)
        y = None
        if s["target"] in frame.columns:
            y = frame[s["target"]].to_numpy()
            if s["target_is_numeric"]:
                y = y.astype(np.float64)
            if len(y) and (y != y).any():
                raise DataFileError(f"{self.path}: missing values in the target column {s['target']!r}.")
        return X, y

    def chunks(self):
        """Yield ``(X, y)``: X dense (numeric columns only) or CSR (with hashed columns)."""
        for row, frame in self._frames():
            yield self._encode(row, frame)


class NpyFile:
    """A ``.npy`` matrix memory-mapped and yielded as views of ``chunk_size`` rows.

    ``target`` is the labels: a ``.npy`` path (memory-mapped too), an array, or None.
    Chunks are views of the file: the operating system pages them in and may drop them
    again, so training holds no anonymous copy of the data.
    """

    format = "npy"

    def __init__(self, path, chunk_size, *, target=None, dtype=None):
        self.path = os.fspath(path)
        self.chunk_size = _check_chunk_size(chunk_size)
        if not os.path.isfile(self.path):
            raise DataFileError(f"{self.path}: no such file.")
        try:
            self.X = np.load(self.path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise DataFileError(f"{self.path}: not a .npy file ({exc}).") from None
        if self.X.ndim != 2 or self.X.dtype not in (np.float32, np.float64):
            raise DataFileError(f"{self.path}: needs a 2-D float32 or float64 array; it holds "
                                f"{self.X.ndim}-D {self.X.dtype}.")
        if not self.X.flags.c_contiguous:
            raise DataFileError(f"{self.path}: is stored in Fortran order; chunks of rows need C order.")
        if dtype is not None and np.dtype(dtype) != self.X.dtype:
            raise ValueError(f"{self.path} holds {self.X.dtype}; a memory map cannot change the dtype "
                             f"(got dtype={np.dtype(dtype)}).")
        self.y = None
        if target is not None:
            self.y = np.load(os.fspath(target), mmap_mode="r") if isinstance(target, (str, os.PathLike)) \
                else np.asarray(target)
            if self.y.shape[:1] != self.X.shape[:1]:
                raise DataFileError(f"{self.path}: {self.X.shape[0]} rows but {self.y.shape[0]} labels.")
        self.n_rows = self.X.shape[0]
        self.classes = None

    @property
    def spec(self):
        return {"format": self.format, "n_features": self.n_features}

    @property
    def n_features(self):
        return self.X.shape[1]

    @property
    def n_chunks(self):
        return -(-self.n_rows // self.chunk_size)

    def read_chunk(self, i):
        """Chunk ``i``: rows ``[i * chunk_size, (i + 1) * chunk_size)`` (views)."""
        lo, hi = i * self.chunk_size, min((i + 1) * self.chunk_size, self.n_rows)
        return self.X[lo:hi], None if self.y is None else np.asarray(self.y[lo:hi])

    def scan(self):
        if self.y is not None:
            self.classes = np.unique(self.y)
        return self

    def chunks(self):
        for i in range(self.n_chunks):
            yield self.read_chunk(i)


def open_file(path, chunk_size, format="auto", **options):
    """The reader for ``path`` (see the module docstring); ``options`` go to its class."""
    fmt = guess_format(path) if format == "auto" else format
    readers = {"svmlight": SvmlightFile, "csv": CSVFile, "npy": NpyFile}
    if fmt not in readers:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}; got {format!r}.")
    try:
        return readers[fmt](path, chunk_size, **options)
    except TypeError as exc:  # an option the format does not have
        raise TypeError(f"format {fmt!r}: {exc}") from None


def open_with_spec(path, chunk_size, spec, dtype=np.float64):
    """A reader that encodes ``path`` exactly as the file ``spec`` was recorded from."""
    fmt = spec["format"]
    if fmt == "svmlight":
        return SvmlightFile(path, chunk_size, n_features=spec["n_features"], zero_based=spec["zero_based"],
                            dtype=dtype)
    if fmt == "csv":
        return CSVFile(path, chunk_size, spec=spec, dtype=dtype)
    if fmt == "npy":
        return NpyFile(path, chunk_size)
    raise ValueError(f"unknown format {fmt!r} in the spec.")
