"""Hardening: fork safety, the Numba cache folder, malformed input, transactional fits.

Each test is named after the failure it guards against (issue 9)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fastgd._backends import _numba_cache, available

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPILED = [b for b in ("cython", "numba") if available(b)]


def _run(args, timeout, env=None, cwd=ROOT):
    full_env = dict(os.environ, PYTHONPATH=ROOT)
    full_env.update(env or {})
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd)


# --- 1. fork after a multi-core fit ----------------------------------------------------------
START_METHODS = ["fork", "forkserver", "spawn", "os.fork", "joblib-loky", "joblib-multiprocessing"]
# The suite runs once per backend (FASTGD_BACKEND): each run checks its own backend once.
TESTED_BACKEND = {"auto": COMPILED[0] if COMPILED else "numpy"}.get(os.environ.get("FASTGD_BACKEND", "auto"),
                                                                   os.environ.get("FASTGD_BACKEND"))


@pytest.mark.skipif(TESTED_BACKEND == "numpy" or not hasattr(os, "fork"),
                    reason="the NumPy reference has no multi-core kernel; no fork on this platform")
def test_fit_in_child_process_does_not_hang_after_multicore_fit():
    # Before the fix, GNU OpenMP's stale thread pool made a forked child wait for ever
    # (Cython) or killed it (Numba's omp layer). The timeout turns a hang into a failure.
    result = _run(["tests/fork_worker.py", TESTED_BACKEND, *START_METHODS], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    done = [line.split()[0] for line in result.stdout.splitlines()]
    assert done == START_METHODS
    if TESTED_BACKEND == "cython":  # one thread, same chunk order: the same bits as the parent
        assert all(line.endswith("exact True") for line in result.stdout.splitlines())


# --- 2. the Numba cache folder ----------------------------------------------------------------
def test_private_cache_folder_is_created_0700(tmp_path):
    path = str(tmp_path / "cache")
    assert _numba_cache.private_folder(path) == path
    assert os.stat(path).st_mode & 0o777 == 0o700
    assert _numba_cache.private_folder(path) == path  # this user's own folder is reused


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o755, 0o701])
def test_private_cache_folder_refuses_a_folder_others_can_access(tmp_path, mode):
    path = tmp_path / "cache"
    path.mkdir()
    path.chmod(mode)
    assert _numba_cache.private_folder(str(path)) is None


def test_private_cache_folder_refuses_a_symlink(tmp_path):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (tmp_path / "cache").symlink_to(target)
    assert _numba_cache.private_folder(str(tmp_path / "cache")) is None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_private_cache_folder_refuses_another_users_folder(tmp_path):
    path = tmp_path / "cache"
    path.mkdir(mode=0o700)
    os.chown(path, 12345, 12345)
    assert _numba_cache.private_folder(str(path)) is None


_CACHE_PROBE = """
import json, os, sys
import numpy as np
from numba.core import config
from fastgd import LinearRegression
X = np.random.default_rng(0).standard_normal((40, 3))
reg = LinearRegression(backend="numba", max_iter=3, tol=None, batch_size=8, random_state=0).fit(X, X.sum(1))
import fastgd._backends._numba as nb
hits = sum(sum(k.stats.cache_hits.values()) for k in nb.COMPILED_KERNELS)
print(json.dumps({"cache_dir": config.CACHE_DIR, "hits": hits, "coef": reg.coef_.tolist()}))
"""


@pytest.fixture(scope="module")
def read_only_install(tmp_path_factory):
    """A copy of the package where Numba can write neither the package's ``__pycache__`` nor
    the home folder's ``.cache``: each is a plain file, so creating the folder fails for any
    user (root included, whom file modes do not stop)."""
    root = tmp_path_factory.mktemp("install")
    shutil.copytree(os.path.join(ROOT, "fastgd"), root / "fastgd",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    for folder in (root / "fastgd" / "_backends",):
        (folder / "__pycache__").write_text("not a folder")
    home = tmp_path_factory.mktemp("home")
    (home / ".cache").write_text("not a folder")
    return root, home


def _probe(install, home, tmpdir):
    env = {"PYTHONPATH": str(install), "HOME": str(home), "TMPDIR": str(tmpdir), "PYTHONDONTWRITEBYTECODE": "1",
           "XDG_CACHE_HOME": None, "NUMBA_CACHE_DIR": None}
    result = _run(["-c", _CACHE_PROBE], timeout=300, env=env, cwd=str(install))
    assert result.returncode == 0, result.stderr
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not available("numba") or not hasattr(os, "getuid"), reason="needs Numba and POSIX users")
def test_read_only_install_fits_with_numba_for_two_users(read_only_install, tmp_path):
    # Before the fix every user shared <tmp>/fastgd-numba-cache: the second user could not
    # write it ("no locator available") and could be served files planted by the first.
    install, home = read_only_install
    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    shared_tmp.chmod(0o1777)
    mine = shared_tmp / f"fastgd-numba-cache-{os.getuid()}"

    first = _probe(install, home, shared_tmp)
    assert first["cache_dir"] == str(mine)
    assert os.stat(mine).st_mode & 0o777 == 0o700
    assert any(name.endswith(".nbi") for _, _, files in os.walk(mine) for name in files)
    again = _probe(install, home, shared_tmp)  # the same user's next process loads the cache
    assert again["hits"] > 0 and again["coef"] == first["coef"]

    # Another user (or this one, carelessly) has made the folder at this user's name
    # accessible to others: it is not trusted, and the fit compiles in a private folder.
    shutil.rmtree(mine)
    mine.mkdir()
    mine.chmod(0o777)
    planted = _probe(install, home, shared_tmp)
    assert planted["cache_dir"] != str(mine)
    assert os.path.basename(planted["cache_dir"]).startswith("fastgd-numba-cache-process-")
    assert not os.path.exists(planted["cache_dir"])  # removed at exit
    assert os.listdir(mine) == []
    assert planted["coef"] == first["coef"]
