"""Streaming from files: chunked readers and multi-pass training with partial_fit semantics."""

import gzip
import io
import shutil

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.feature_extraction import FeatureHasher

from fastgd import LinearRegression, LogisticRegression, stream
from fastgd._file_readers import DataFileError
from fastgd.datasets import dump_svmlight, iter_chunks, load_svmlight, make_sparse_classification
from fastgd.stream import _holdout_mask

pd = pytest.importorskip("pandas")


def _gzip(path):
    with open(path, "rb") as f, gzip.open(str(path) + ".gz", "wb") as g:
        shutil.copyfileobj(f, g)
    return str(path) + ".gz"


@pytest.fixture
def svm_file(tmp_path):
    X, y, _ = make_sparse_classification(230, 50, 6, random_state=0)
    path = str(tmp_path / "data.svm")
    dump_svmlight(X, y, path)
    return str(path), X, y


def _model(**kw):
    return LogisticRegression(optimizer="sgd", learning_rate=0.1, batch_size=1, random_state=0, **kw)


@pytest.mark.parametrize("compressed", [False, True])
def test_svmlight_chunks_are_the_file_split_by_rows(svm_file, compressed):
    path, X, y = svm_file
    path = _gzip(path) if compressed else path
    chunks = list(iter_chunks(path, chunk_size=100, n_features=50, zero_based=True))
    assert [c[0].shape[0] for c in chunks] == [100, 100, 30]
    assert_allclose(sp.vstack([c[0] for c in chunks]).toarray(), X.toarray())
    assert_array_equal(np.concatenate([c[1] for c in chunks]), y)


def test_svmlight_index_base_and_width_are_decided_once_for_the_whole_file(tmp_path):
    # Only the second chunk holds index 0: chunk-wise guessing would shift the first chunk.
    path = tmp_path / "zero.svm"
    path.write_text("1 1:1 4:2\n0 2:1\n1 0:3\n")
    chunks = list(iter_chunks(path, chunk_size=2))
    X = sp.vstack([c[0] for c in chunks]).toarray()
    assert X.shape == (3, 5)
    assert_allclose(X, load_svmlight(str(path), zero_based=True)[0].toarray())


def test_csv_numeric_columns_are_features_and_strings_are_hashed(tmp_path):
    frame = pd.DataFrame({"label": [1, 0, 1, 0, 1], "x": [0.5, 1.5, -2.0, 3.0, 0.0],
                          "city": ["paris", "rome", None, "paris", "oslo"], "z": [1, 2, 3, 4, 5]})
    path = tmp_path / "data.csv.gz"
    frame.to_csv(path, index=False)
    chunks = list(iter_chunks(path, chunk_size=2, target="label", hash_bits=4))
    X = sp.vstack([c[0] for c in chunks]).toarray()
    tokens = [[f"city={c}"] if pd.notna(c) else [] for c in frame["city"]]
    hashed = FeatureHasher(n_features=16, input_type="string").transform(tokens).toarray()
    assert_allclose(X, np.hstack([frame[["x", "z"]].to_numpy(), hashed]))
    assert_array_equal(np.concatenate([c[1] for c in chunks]), frame["label"])


def test_csv_of_numbers_only_gives_dense_chunks(tmp_path):
    path = tmp_path / "num.csv"
    path.write_text("y,a,b\n1,0.5,2\n0,1,3\n")
    (X, y), = iter_chunks(path, chunk_size=10)
    assert isinstance(X, np.ndarray)
    assert_allclose(X, [[0.5, 2], [1, 3]])
    assert_array_equal(y, [1, 0])


def test_npy_chunks_are_views_of_the_memory_mapped_file(tmp_path):
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(10) % 2)
    chunks = list(iter_chunks(tmp_path / "X.npy", chunk_size=4, target=str(tmp_path / "y.npy")))
    assert [c[0].shape for c in chunks] == [(4, 4), (4, 4), (2, 4)]
    assert all(isinstance(c[0], np.memmap) for c in chunks)
    assert_array_equal(np.vstack([c[0] for c in chunks]), X)


@pytest.mark.parametrize("text, message", [
    ("1 1:0.5 abc\n", "line 1 is not valid svmlight"),
    ("", "no rows"),
])
def test_bad_svmlight_files_name_the_file_and_rows(tmp_path, text, message):
    path = tmp_path / "bad.svm"
    path.write_text(text)
    with pytest.raises(DataFileError, match=message):
        list(iter_chunks(path, chunk_size=10))


def test_missing_file_and_unknown_format_are_clear_errors(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        list(iter_chunks(tmp_path / "nope.svm"))
    with pytest.raises(DataFileError, match="cannot tell the format"):
        list(iter_chunks(tmp_path / "data.parquet"))


def test_csv_row_that_breaks_the_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("y,a\n1,0.5\n0,1\n1,oops\n")
    with pytest.raises(DataFileError, match="schema of its first rows"):
        list(iter_chunks(path, chunk_size=2))


@pytest.mark.parametrize("compressed", [False, True])
def test_stream_fit_equals_partial_fit_over_the_same_chunks(svm_file, compressed):
    path, _, _ = svm_file
    path = _gzip(path) if compressed else path
    streamed = stream.fit(_model(), path, passes=3, shuffle=False, chunk_size=64, n_features=50)
    manual = _model()
    for _ in range(3):
        for X, y in iter_chunks(path, chunk_size=64, n_features=50):
            manual.partial_fit(X, y, classes=[0, 1])
    assert_array_equal(streamed.coef_, manual.coef_)
    assert_array_equal(streamed.intercept_, manual.intercept_)
    assert streamed.t_ == manual.t_ == 3 * 230


def test_shuffled_chunk_order_is_reproducible_and_matches_the_drawn_permutation(svm_file):
    path, _, _ = svm_file
    a = stream.fit(_model(), path, passes=3, chunk_size=64, n_features=50, random_state=7)
    b = stream.fit(_model(), path, passes=3, chunk_size=64, n_features=50, random_state=7)
    assert_array_equal(a.coef_, b.coef_)
    # The documented order: file order on the first pass, then a permutation per pass.
    chunks = list(iter_chunks(path, chunk_size=64, n_features=50))
    rng = np.random.default_rng(7)
    rng.integers(2**63)  # the seed of the held-out rows
    manual = _model()
    order = list(range(len(chunks)))
    for p in range(3):
        if p > 0:
            order = rng.permutation(len(chunks))
        for i in order:
            manual.partial_fit(*chunks[i], classes=[0, 1])
    assert_array_equal(a.coef_, manual.coef_)
    unshuffled = stream.fit(_model(), path, passes=3, chunk_size=64, n_features=50, shuffle=False)
    assert not np.array_equal(a.coef_, unshuffled.coef_)


def test_cache_gives_the_same_model_as_reading_the_file_again(svm_file):
    path, _, _ = svm_file
    cached = stream.fit(_model(), path, passes=2, shuffle=False, chunk_size=64, n_features=50)
    reread = stream.fit(_model(), path, passes=2, shuffle=False, chunk_size=64, n_features=50, cache=False)
    assert_array_equal(cached.coef_, reread.coef_)


def test_holdout_rows_are_never_trained_on_and_reported_each_pass(svm_file):
    path, _, _ = svm_file
    model = stream.fit(_model(), path, passes=2, shuffle=False, holdout=0.25, chunk_size=64,
                       n_features=50, random_state=3)
    seed = np.random.default_rng(3).integers(2**63)
    manual = _model()
    for _ in range(2):
        for i, (X, y) in enumerate(iter_chunks(path, chunk_size=64, n_features=50)):
            keep = ~_holdout_mask(X.shape[0], 0.25, int(seed), i)
            manual.partial_fit(X[keep], y[keep], classes=[0, 1])
    assert_array_equal(model.coef_, manual.coef_)
    history = model.pass_history_
    assert [h["pass"] for h in history] == [1, 2]
    assert history[0]["rows"] + history[1]["holdout_rows"] == 230
    assert 0 < history[1]["holdout_loss"] < np.log(2)
    assert 0.5 < history[1]["holdout_score"] <= 1


def test_regression_streams_from_a_memory_mapped_npy_file(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.3
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    model = stream.fit(LinearRegression(optimizer="sgd", learning_rate=0.01, batch_size=1, random_state=0),
                       tmp_path / "X.npy", passes=5, chunk_size=100, target=str(tmp_path / "y.npy"),
                       holdout=0.1, random_state=0)
    assert_allclose(model.coef_, [1.0, -2.0, 0.5], atol=1e-2)
    assert model.pass_history_[-1]["holdout_loss"] < 1e-3


def test_progress_bar_counts_every_chunk_of_every_pass(svm_file):
    tqdm = pytest.importorskip("tqdm")
    path, _, _ = svm_file
    with tqdm.tqdm(file=io.StringIO()) as bar:
        stream.fit(_model(), path, passes=2, chunk_size=64, n_features=50, progress=bar)
        assert bar.n == 2 * 4 and bar.total == 2 * 4


@pytest.mark.parametrize("kwargs, message", [
    ({"passes": 0}, "passes must be a positive integer"),
    ({"holdout": 1.5}, "holdout must be a fraction"),
    ({"chunk_size": 0}, "chunk_size must be a positive integer"),
])
def test_bad_options_are_clear_errors(svm_file, kwargs, message):
    with pytest.raises(ValueError, match=message):
        stream.fit(_model(), svm_file[0], **kwargs)


def test_compiled_svmlight_parser_equals_scikit_learn_on_every_number_format(tmp_path):
    rng = np.random.default_rng(0)
    formats = [repr, "{:.6g}".format, "{:.3e}".format, "{:.17g}".format, lambda v: str(int(v * 100)),
               lambda v: f"{v:.25f}", lambda v: f"{v * 1e30:g}", lambda v: f"{v * 1e-30:.17g}"]
    lines = ["# a comment line", ""]
    for r in range(300):
        label = ["1", "-1", "+1", "0", "2.5e0"][r % 5]
        cols = np.sort(rng.choice(40, size=rng.integers(0, 8), replace=False)) + 1
        feats = " ".join(f"{c}:{formats[(r + c) % len(formats)](rng.standard_normal())}" for c in cols)
        qid = " qid:7" if r % 7 == 0 else ""
        tail = " # trailing comment" if r % 11 == 0 else ""
        lines.append(f"{label}{qid} {feats}{tail}".rstrip())
    path = tmp_path / "formats.svm"
    path.write_text("\r\n".join(lines) + "\n")
    chunks = list(iter_chunks(path, chunk_size=37, n_features=41, zero_based=False))
    X = sp.vstack([c[0] for c in chunks])
    X_ref, y_ref = load_svmlight(str(path), n_features=41, zero_based=False)
    assert_array_equal(X.toarray(), X_ref.toarray())  # bit for bit
    assert_array_equal(np.concatenate([c[1] for c in chunks]), y_ref)


@pytest.mark.parametrize("text, options, message", [
    ("1 3:1\n0 2:x\n", {}, "line 2 is not valid svmlight"),
    ("1 3:1\n0 2 1\n", {}, "line 2 is not valid svmlight"),
    ("1 3:1\n0 12:1\n", {"n_features": 5, "zero_based": False}, "line 2 has a feature index outside"),
    ("1 0:1\n", {"n_features": 5, "zero_based": False}, "line 1 has a feature index outside"),
])
def test_bad_svmlight_lines_are_located(tmp_path, text, options, message):
    path = tmp_path / "bad.svm"
    path.write_text(text)
    with pytest.raises(DataFileError, match=message):
        list(iter_chunks(path, chunk_size=10, **options))


def test_any_partial_fit_estimator_streams_and_reports_its_holdout_loss(svm_file):
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import log_loss

    path, X, y = svm_file
    model = stream.fit(SGDClassifier(loss="log_loss", random_state=0), path, holdout=0.2, chunk_size=1000,
                       n_features=50, random_state=0)
    seed = np.random.default_rng(0).integers(2**63)
    held = _holdout_mask(X.shape[0], 0.2, int(seed), 0)
    # a single chunk: its held-out rows are scored after training on the others
    entry = model.pass_history_[0]
    assert entry["holdout_rows"] == held.sum() and entry["rows"] == (~held).sum()
    assert entry["holdout_loss"] == pytest.approx(log_loss(y[held], model.predict_proba(X[held]), labels=[0, 1]))
    assert entry["holdout_score"] == pytest.approx(model.score(X[held], y[held]))
