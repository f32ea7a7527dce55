"""A compiled svmlight / libsvm parser for chunks of lines (the streaming readers' hot loop).

scikit-learn's ``load_svmlight_file`` parsed about 10 MB/s here, so a pass over a text file
took several times longer than training on it. This parser reads a chunk of lines held as
bytes in one Numba call (``nogil``) and writes the CSR arrays directly.

Numbers are parsed exactly: a decimal with at most 19 significant digits whose mantissa is
below 2^53 and whose power of ten is within 10^±22 is one correctly rounded IEEE operation
(both operands are exact doubles). Any other number (longer mantissas, huge exponents,
``inf``/``nan``) is recorded and parsed afterwards by Python's ``float``, so every value equals
what Python's (correctly rounded) parser gives.

The grammar is the one scikit-learn accepts: ``<label> [qid:<int>] <index>:<value> ...
[# comment]`` per line; blank lines and lines starting with ``#`` are skipped.
"""

import numpy as np
from numba import njit

OK = 0
BAD_LINE = 1
INDEX_OUT_OF_RANGE = 2
_POW10 = np.array([10.0 ** k for k in range(23)])
_MANTISSA_EXACT = 1 << 53


@njit(cache=True, nogil=True, inline="always")
def _is_space(ch):
    return ch == 32 or ch == 9 or ch == 13 or ch == 11 or ch == 12


@njit(cache=True, nogil=True)
def _number(buf, pos, end, pow10):
    """Parse a decimal at ``buf[pos:end]``: returns (value, next position, ok, exact)."""
    start = pos
    neg = False
    if pos < end and (buf[pos] == 45 or buf[pos] == 43):  # - +
        neg = buf[pos] == 45
        pos += 1
    mant = np.int64(0)
    digits = 0
    significant = 0
    exp10 = 0
    exact = True
    while pos < end and 48 <= buf[pos] <= 57:
        if significant > 0 or buf[pos] != 48:
            significant += 1
        if significant <= 18:
            mant = mant * 10 + (buf[pos] - 48)
        else:
            exact = False
        digits += 1
        pos += 1
    if pos < end and buf[pos] == 46:  # .
        pos += 1
        while pos < end and 48 <= buf[pos] <= 57:
            if significant > 0 or buf[pos] != 48:
                significant += 1
            if significant <= 18:
                mant = mant * 10 + (buf[pos] - 48)
                exp10 -= 1
            else:
                exact = False
            digits += 1
            pos += 1
    if digits == 0:
        # inf, nan and other words: let Python's float decide (it raises on garbage)
        while pos < end and not _is_space(buf[pos]) and buf[pos] != 10 and buf[pos] != 58:
            pos += 1
        return 0.0, pos, pos > start, False
    if pos < end and (buf[pos] == 101 or buf[pos] == 69):  # e E
        pos += 1
        eneg = False
        if pos < end and (buf[pos] == 45 or buf[pos] == 43):
            eneg = buf[pos] == 45
            pos += 1
        e = 0
        edigits = 0
        while pos < end and 48 <= buf[pos] <= 57:
            if e < 100000:
                e = e * 10 + (buf[pos] - 48)
            edigits += 1
            pos += 1
        if edigits == 0:
            return 0.0, pos, False, False
        exp10 += -e if eneg else e
    if mant > _MANTISSA_EXACT or exp10 > 22 or exp10 < -22:
        exact = False
    value = 0.0
    if exact:
        value = float(mant) * pow10[exp10] if exp10 >= 0 else float(mant) / pow10[-exp10]
    return (-value if neg else value), pos, True, exact


@njit(cache=True, nogil=True)
def parse_lines(buf, shift, n_features, data, indices, indptr, y, slow, pow10):
    """Parse svmlight lines in ``buf`` (uint8) into CSR arrays.

    ``shift`` is subtracted from every index (1 for one-based files); ``n_features < 0`` means
    unbounded. ``slow`` (one row per number at most, 4) int64 receives (0 label / 1 value,
    position, byte start, byte end) of the numbers left to Python. Returns ``(status, n_rows, nnz,
    n_slow, bad_line)`` with ``bad_line`` the 0-based line number of an error.
    """
    n = buf.shape[0]
    pos = 0
    line = 0
    row = 0
    nnz = 0
    n_slow = 0
    indptr[0] = 0
    while pos < n:
        while pos < n and _is_space(buf[pos]):
            pos += 1
        if pos >= n:
            break
        if buf[pos] == 10 or buf[pos] == 35:  # blank line or comment line
            while pos < n and buf[pos] != 10:
                pos += 1
            pos += 1
            line += 1
            continue
        start = pos
        value, pos, ok, exact = _number(buf, pos, n, pow10)
        if not ok or (pos < n and not _is_space(buf[pos]) and buf[pos] != 10):
            return BAD_LINE, row, nnz, n_slow, line
        if not exact:
            slow[n_slow, 0] = 0
            slow[n_slow, 1] = row
            slow[n_slow, 2] = start
            slow[n_slow, 3] = pos
            n_slow += 1
        y[row] = value
        while True:
            while pos < n and _is_space(buf[pos]):
                pos += 1
            if pos >= n or buf[pos] == 10:
                break
            if buf[pos] == 35:  # comment to the end of the line
                while pos < n and buf[pos] != 10:
                    pos += 1
                break
            if pos + 3 < n and buf[pos] == 113 and buf[pos + 1] == 105 and buf[pos + 2] == 100 \
                    and buf[pos + 3] == 58:  # qid:
                pos += 4
                while pos < n and not _is_space(buf[pos]) and buf[pos] != 10:
                    pos += 1
                continue
            index = np.int64(0)
            idigits = 0
            while pos < n and 48 <= buf[pos] <= 57:
                if index < (np.int64(1) << 50):
                    index = index * 10 + (buf[pos] - 48)
                idigits += 1
                pos += 1
            if idigits == 0 or pos >= n or buf[pos] != 58:
                return BAD_LINE, row, nnz, n_slow, line
            pos += 1
            index -= shift
            if index < 0 or (n_features >= 0 and index >= n_features):
                return INDEX_OUT_OF_RANGE, row, nnz, n_slow, line
            start = pos
            value, pos, ok, exact = _number(buf, pos, n, pow10)
            if not ok or (pos < n and not _is_space(buf[pos]) and buf[pos] != 10):
                return BAD_LINE, row, nnz, n_slow, line
            if not exact:
                slow[n_slow, 0] = 1
                slow[n_slow, 1] = nnz
                slow[n_slow, 2] = start
                slow[n_slow, 3] = pos
                n_slow += 1
            indices[nnz] = index
            data[nnz] = value
            nnz += 1
        row += 1
        indptr[row] = nnz
        pos += 1
        line += 1
    return OK, row, nnz, n_slow, line


def parse_chunk(raw, shift, n_features, dtype):
    """Parse ``raw`` (bytes of whole lines) into ``(data, indices, indptr, y)``.

    Returns ``(status, arrays, bad_line)``. Indices are int32 when ``n_features`` allows it.
    """
    buf = np.frombuffer(raw, dtype=np.uint8)
    n_lines = int(np.count_nonzero(buf == 10)) + 1
    cap = int(np.count_nonzero(buf == 58))
    index_dtype = np.int32 if 0 <= n_features < 2**31 else np.int64
    data = np.empty(cap, dtype=np.float64)
    indices = np.empty(cap, dtype=index_dtype)
    indptr = np.empty(n_lines + 1, dtype=np.int64)
    y = np.empty(n_lines, dtype=np.float64)
    slow = np.empty((cap + n_lines, 4), dtype=np.int64)
    status, n_rows, nnz, n_slow, bad_line = parse_lines(buf, shift, n_features, data, indices, indptr, y, slow,
                                                        _POW10)
    if status != OK:
        return status, None, bad_line
    if n_slow:
        slow = slow[:n_slow]
        # NumPy's bytes -> float conversion rounds correctly, as Python's float does
        tokens = np.array([raw[lo:hi] for lo, hi in slow[:, 2:]])
        try:
            values = tokens.astype(np.float64)
        except ValueError:
            bad = next(i for i, tok in enumerate(tokens) if not _is_float(tok))
            return BAD_LINE, None, raw.count(b"\n", 0, int(slow[bad, 2]))
        labels = slow[:, 0] == 0
        y[slow[labels, 1]] = values[labels]
        data[slow[~labels, 1]] = values[~labels]
    indptr = indptr[:n_rows + 1]
    if nnz < 2**31:
        indptr = indptr.astype(np.int32)
    return OK, (data[:nnz].astype(dtype, copy=False), indices[:nnz], indptr, y[:n_rows]), bad_line


def _is_float(token):
    try:
        float(token)
    except ValueError:
        return False
    return True
