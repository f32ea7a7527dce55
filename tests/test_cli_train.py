"""``fastgd train / predict / evaluate``: the round trip, CSV hashing, and one-line errors."""

import os
import subprocess
import sys

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastgd import LinearRegression, LogisticRegression
from fastgd.cli import main
from fastgd.datasets import dump_svmlight, load_svmlight, make_sparse_classification

pd = pytest.importorskip("pandas")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def svm_files(tmp_path):
    X, y, _ = make_sparse_classification(400, 60, 6, random_state=0)
    train, test = str(tmp_path / "train.svm"), str(tmp_path / "test.svm")
    dump_svmlight(X[:300], y[:300], train)
    dump_svmlight(X[300:], y[300:], test)
    return train, test, tmp_path


def test_train_predict_evaluate_round_trip(svm_files, capsys):
    train, test, tmp = svm_files
    model_path = str(tmp / "m.joblib")
    assert main(["train", train, "--model", model_path, "--passes", "3", "--n-features", "60", "--quiet"]) == 0
    model = joblib.load(model_path)
    assert isinstance(model, LogisticRegression) and model.coef_.shape == (1, 60)
    assert len(model.pass_history_) == 3 and model.pass_history_[-1]["holdout_loss"] > 0
    capsys.readouterr()

    out = str(tmp / "pred.txt")
    assert main(["predict", test, "--model", model_path, "--out", out]) == 0
    X, y = load_svmlight(test, n_features=60, zero_based=True)
    assert_array_equal(np.loadtxt(out), model.predict(X))

    assert main(["predict", test, "--model", model_path, "--proba"]) == 0
    proba = np.loadtxt(capsys.readouterr().out.splitlines(), delimiter=",")
    assert_allclose(proba, model.predict_proba(X), rtol=1e-8)

    assert main(["evaluate", test, "--model", model_path]) == 0
    line = capsys.readouterr().out
    assert f"rows {len(y)}" in line and f"accuracy {model.score(X, y):.6g}" in line


def test_train_prints_per_pass_holdout_loss(svm_files, capsys):
    train, _, tmp = svm_files
    assert main(["train", train, "--model", str(tmp / "m.joblib"), "--passes", "2"]) == 0
    out = capsys.readouterr().out
    assert "pass 1/2" in out and "pass 2/2" in out and out.count("holdout loss") == 2


def test_options_reach_the_estimator(svm_files):
    train, _, tmp = svm_files
    path = str(tmp / "m.joblib")
    main(["train", train, "--model", path, "--optimizer", "sgd", "--learning-rate", "0.05", "--l1", "0.001",
          "--l2", "0.003", "--batch-size", "4", "--holdout", "0", "--quiet"])
    model = joblib.load(path)
    assert (model.optimizer, model.learning_rate, model.batch_size) == ("sgd", 0.05, 4)
    assert model.penalty == "elasticnet" and model.alpha == pytest.approx(0.004) and model.l1_ratio == pytest.approx(0.25)
    assert model.pass_history_[0]["holdout_loss"] is None


def test_csv_with_string_columns_hashes_the_same_way_at_predict(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 300
    city = rng.choice(["paris", "rome", "oslo"], n)
    x = rng.standard_normal(n)
    y = ((city == "rome") + x > 0.5).astype(int)
    frame = pd.DataFrame({"x": x, "city": city, "clicked": y})
    frame.to_csv(tmp_path / "train.csv.gz", index=False)
    frame.drop(columns="clicked").to_csv(tmp_path / "new.csv", index=False)
    model_path = str(tmp_path / "m.joblib")
    assert main(["train", str(tmp_path / "train.csv.gz"), "--model", model_path, "--target", "clicked",
                 "--hash-bits", "6", "--passes", "5", "--quiet"]) == 0
    model = joblib.load(model_path)
    assert model.coef_.shape == (1, 1 + 2**6)
    assert model.input_spec_["hashed"] == ["city"] and model.input_spec_["numeric"] == ["x"]
    assert main(["predict", str(tmp_path / "new.csv"), "--model", model_path]) == 0
    predicted = np.array(capsys.readouterr().out.split(), dtype=int)
    assert (predicted == y).mean() > 0.9
    assert main(["evaluate", str(tmp_path / "train.csv.gz"), "--model", model_path]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_squared_loss_trains_a_linear_regression(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame.insert(0, "y", X @ [1.0, 2.0, -1.0])
    frame.to_csv(tmp_path / "reg.csv", index=False)
    path = str(tmp_path / "m.joblib")
    assert main(["train", str(tmp_path / "reg.csv"), "--model", path, "--loss", "squared", "--optimizer", "sgd",
                 "--learning-rate", "0.02", "--passes", "5", "--quiet"]) == 0
    model = joblib.load(path)
    assert isinstance(model, LinearRegression)
    assert_allclose(model.coef_, [1.0, 2.0, -1.0], atol=1e-2)
    assert main(["evaluate", str(tmp_path / "reg.csv"), "--model", path]) == 0
    assert "rmse" in capsys.readouterr().out


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and match in err, err


def test_bad_files_give_a_one_line_error(svm_files, capsys):
    train, test, tmp = svm_files
    bad = tmp / "bad.svm"
    bad.write_text("1 3:1\nnot svmlight at all\n")
    model = str(tmp / "m.joblib")
    _one_line_error(capsys, ["train", str(tmp / "missing.svm"), "--model", model], "no such file")
    _one_line_error(capsys, ["train", str(bad), "--model", model], "not valid svmlight")
    _one_line_error(capsys, ["train", str(tmp / "data.parquet"), "--model", model], "cannot tell the format")
    _one_line_error(capsys, ["predict", test, "--model", train], "not a model")
    _one_line_error(capsys, ["evaluate", test, "--model", str(tmp / "none.joblib")], "no such model file")
    joblib.dump(LogisticRegression(), tmp / "plain.joblib")
    _one_line_error(capsys, ["predict", test, "--model", str(tmp / "plain.joblib")], "not a model written by fastgd")


def test_three_classes_need_softmax(tmp_path, capsys):
    path = tmp_path / "three.svm"
    path.write_text("0 1:1\n1 2:1\n2 3:1\n0 1:2\n")
    _one_line_error(capsys, ["train", str(path), "--model", str(tmp_path / "m.joblib")], "--loss softmax")
    assert main(["train", str(path), "--model", str(tmp_path / "m.joblib"), "--loss", "softmax", "--quiet"]) == 0
    assert_array_equal(joblib.load(tmp_path / "m.joblib").classes_, [0, 1, 2])


@pytest.mark.parametrize("option", [["--passes", "0"], ["--holdout", "1"], ["--learning-rate", "-1"],
                                    ["--hash-bits", "40"], ["--loss", "hinge"], ["--optimizer", "lbfgs"]])
def test_bad_options_exit_2_with_one_line(svm_files, capsys, option):
    train, _, tmp = svm_files
    with pytest.raises(SystemExit) as exit_info:
        main(["train", train, "--model", str(tmp / "m.joblib"), *option])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and option[0] in err


def test_command_line_in_a_subprocess_never_prints_a_traceback(svm_files):
    train, test, tmp = svm_files
    env = dict(os.environ, PYTHONPATH=ROOT)
    model = str(tmp / "m.joblib")
    run = [sys.executable, "-m", "fastgd.cli"]
    ok = subprocess.run(run + ["train", train, "--model", model, "--quiet"], env=env, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(run + ["evaluate", str(tmp / "nope.svm"), "--model", model], env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no such file" in bad.stderr
