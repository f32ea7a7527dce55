"""The command line: version, help texts, and one-line errors with exit status 2."""

import argparse
import os
import subprocess
import sys

import pytest

import fastgd
from fastgd import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastgd.__file__)))


def run_module(*args):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "fastgd", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastgd {fastgd.__version__}"


def test_python_m_fastgd_runs_the_cli():
    done = run_module("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"fastgd {fastgd.__version__}"
    bare = run_module()
    assert bare.returncode == 0 and "demo" in bare.stdout and "usage: fastgd" in bare.stdout


@pytest.mark.parametrize("argv", [
    ["demo", "--seed", "-1"],
    ["demo", "--seed", "abc"],
    ["demo", "--data", "mnist"],
    ["demo", "--backend", "gpu"],
    ["demo-sparse", "--nnz", "0"],
    ["no-such-command"],
    ["demo", "--bogus"],
])
def test_bad_input_is_one_line_and_status_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err and "Traceback" not in err


def test_errors_raised_while_running_are_one_line(capsys, monkeypatch):
    def failing(args):
        raise ValueError("X has 3 features\nbut 4 were expected")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["demo"].set_defaults(func=failing)
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err == "fastgd demo: error: X has 3 features but 4 were expected\n"


def test_every_option_has_help_and_shows_its_default():
    parser = cli.build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    assert set(subparsers) >= {"demo", "demo-sparse"}
    for name, sub in subparsers.items():
        text = sub.format_help()
        assert "``" not in text and ":class:" not in text, f"raw reST in the help of {name}"
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings} has no help text"
            if action.option_strings and not action.required:
                assert f"(default: {action.default})" in " ".join(text.split()), f"{name} {action.option_strings}"
    assert "``" not in parser.format_help()


def test_datasets_is_reachable_from_the_package(tmp_path):
    # in a fresh interpreter, as the README writes it: no other import has loaded the submodule
    path = tmp_path / "train.svm"
    path.write_bytes(b"1 1:0.5 3:2\n0 2:1\n")
    code = ("import sys, fastgd; assert 'fastgd.datasets' not in sys.modules; "
            f"X, y = fastgd.datasets.load_svmlight({str(path)!r}, zero_based=False); print(X.shape, y.tolist())")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(2, 3) [1.0, 0.0]"
