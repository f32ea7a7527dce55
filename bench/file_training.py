"""``bench.compare`` section "file": training from a file on disk, fastgd against Vowpal
Wabbit, River and scikit-learn's ``SGDClassifier.partial_fit`` loop, on the same data.

The data: a sparse binary problem (12 non-zeros per row, 2^20 hashed columns) written once
as svmlight (for fastgd and scikit-learn) and once in VW's text format (the same numbers,
six significant digits, one namespace), so every tool reads the same values from text.

- end to end: parse the text file and train 5 passes (fastgd: :func:`fastgd.stream.fit`,
  which caches the parsed chunks in binary after the first pass; VW: ``--cache_file -k
  --passes 5``, which also writes and reads its binary cache; scikit-learn: a
  ``partial_fit`` loop over :func:`fastgd.datasets.iter_chunks`, re-reading the text);
- per pass from the cache: fastgd's median pass time of passes 2-5 of that run; VW's
  ``(time of 3 passes from an existing cache - time of 1 pass) / 2``, so its start-up and
  model write are not counted;
- River, one online pass: ``learn_one`` over pre-built feature dicts (its parsing not
  counted), against fastgd's one pass over the same rows in memory (``partial_fit`` per
  chunk); compared as rows per second.

All learners: logistic loss, no penalty, one row per step. fastgd's plain SGD is compared with
VW's ``--sgd``, fastgd's AdaGrad with VW's default (adaptive, normalised, invariant) update;
River runs plain SGD.
"""

import os
import shutil
import tempfile
import time
import warnings

import numpy as np

from bench import _common

N_FEATURES_BITS = 20
PASSES = 5


def _write_files(directory, n_rows):
    from fastgd.datasets import make_sparse_classification

    X, y, _ = make_sparse_classification(n_rows, 1 << N_FEATURES_BITS, 12, random_state=0)
    X.data = np.array([float(f"{v:.6g}") for v in X.data])  # the values both text files hold
    svm, vw = os.path.join(directory, "train.svm"), os.path.join(directory, "train.vw")
    with open(svm, "w") as fs, open(vw, "w") as fv:
        for i in range(X.shape[0]):
            lo, hi = X.indptr[i], X.indptr[i + 1]
            feats = [f"{c}:{v:.6g}" for c, v in zip(X.indices[lo:hi], X.data[lo:hi])]
            fs.write(f"{y[i]} {' '.join(feats)}\n")
            fv.write(f"{1 if y[i] else -1} |f {' '.join(feats)}\n")
    return X, y, svm, vw


# fastgd's optimizer and the VW update rule it is compared with: plain SGD against VW's
# --sgd, AdaGrad against VW's default (adaptive, normalised, invariant) update.
PAIRS = (("sgd", "--sgd"), ("adagrad", ""))


def _fastgd_model(backend, optimizer):
    from fastgd import LogisticRegression

    return LogisticRegression(optimizer=optimizer, learning_rate=0.1, batch_size=1, penalty=None, random_state=0,
                              backend=backend)


def _fastgd_end_to_end(svm, backend, optimizer):
    from fastgd import stream

    return stream.fit(_fastgd_model(backend, optimizer), svm, passes=PASSES, classes=[0, 1],
                      n_features=1 << N_FEATURES_BITS, zero_based=True, random_state=0)


def _vw(args):
    from vowpalwabbit import Workspace

    ws = Workspace(args + " --quiet")
    ws.finish()


def _sklearn_loop(svm):
    from sklearn.linear_model import SGDClassifier

    from fastgd.datasets import iter_chunks

    model = SGDClassifier(loss="log_loss", penalty=None, learning_rate="adaptive", eta0=0.1, random_state=0)
    for _ in range(PASSES):
        for X, y in iter_chunks(svm, 100_000, n_features=1 << N_FEATURES_BITS, zero_based=True):
            model.partial_fit(X, y, classes=[0, 1])
    return model


def section_file(rep, backends, args):
    print("\n== training from a file: Vowpal Wabbit, River, SGDClassifier.partial_fit ==", flush=True)
    warnings.simplefilter("ignore")
    n_rows = max(20_000, int(1_000_000 * args.scale))
    repeats = max(1, args.repeats // 2)
    tmp = tempfile.mkdtemp(prefix="fastgd-bench-file-")
    try:
        X, y, svm, vw = _write_files(tmp, n_rows)
        mb = os.path.getsize(svm) / 1e6
        workload = f"{n_rows} rows x 2^{N_FEATURES_BITS}, 12 nnz/row, svmlight {mb:.0f} MB"
        backend = "cython" if "cython" in backends else next(iter(backends))
        try:
            import vowpalwabbit  # noqa: F401
            have_vw = True
        except ImportError:
            have_vw = False
            rep.skip("  [file] Vowpal Wabbit not installed (pip install vowpalwabbit): VW rows skipped")
        cache = os.path.join(tmp, "train.vw.cache")
        vw_args = f"--data {vw} --loss_function logistic -b {N_FEATURES_BITS} --holdout_off"
        for optimizer, vw_flag in PAIRS:
            _fastgd_end_to_end(svm, backend, optimizer)  # compile / load kernels and parser untimed
            label = f"fastgd[{backend}] stream.fit {optimizer}"
            fns = {"fastgd": lambda o=optimizer: _fastgd_end_to_end(svm, backend, o)}
            if have_vw:
                def vw_end_to_end(flag=vw_flag):
                    if os.path.exists(cache):
                        os.remove(cache)
                    _vw(f"{vw_args} {flag} --cache_file {cache} -k --passes {PASSES}")

                fns["vw"] = vw_end_to_end
            if optimizer == "sgd":
                fns["sklearn"] = lambda: _sklearn_loop(svm)
            times = _common.alternate(fns, repeats, warmup=0)
            e2e = f"end to end: parse + {PASSES} passes, {workload}"
            if have_vw:
                rep.pair("file", e2e, label, times["fastgd"], f"VW {vw_flag or '(default update)'} --cache_file -k",
                         times["vw"], "both cache the parsed data in binary after pass 1")
            if "sklearn" in times:
                rep.pair("file", e2e, label, times["fastgd"], "SGDClassifier.partial_fit loop over iter_chunks",
                         times["sklearn"], "scikit-learn has no cache: the text is parsed every pass")
            ours_pass = []
            for _ in range(repeats):
                model = _fastgd_end_to_end(svm, backend, optimizer)
                ours_pass.append(float(np.median([h["seconds"] for h in model.pass_history_[1:]])))
            if have_vw:
                _vw(f"{vw_args} {vw_flag} --cache_file {cache} -k --passes 1")  # (re)make the cache
                vw_pass = []
                for _ in range(repeats):
                    t1 = _common.timed(lambda: _vw(f"{vw_args} {vw_flag} --cache_file {cache} --passes 1"))
                    t3 = _common.timed(lambda: _vw(f"{vw_args} {vw_flag} --cache_file {cache} --passes 3"))
                    vw_pass.append(max((t3 - t1) / 2, 1e-9))
                rep.pair("file", f"one pass from the binary cache, {workload}", f"{label}, median of passes 2-5",
                         ours_pass, f"VW {vw_flag or '(default update)'} ((3 passes - 1 pass) / 2)", vw_pass)

        try:
            from river import linear_model, optim
        except ImportError:
            rep.skip("  [file] River not installed (pip install river): River row skipped")
        else:
            n_river = min(n_rows, 50_000)
            rows = [dict(zip(X.indices[X.indptr[i]:X.indptr[i + 1]].tolist(),
                             X.data[X.indptr[i]:X.indptr[i + 1]].tolist())) for i in range(n_river)]
            labels = [bool(v) for v in y[:n_river]]
            Xr, yr = X[:n_river], y[:n_river]

            def river_pass():
                model = linear_model.LogisticRegression(optimizer=optim.SGD(0.1), l2=0.0)
                for xi, yi in zip(rows, labels):
                    model.learn_one(xi, yi)

            def ours_one_pass(shuffle=True):
                _fastgd_model(backend, "sgd").set_params(shuffle=shuffle).partial_fit(Xr, yr, classes=[0, 1])

            times = _common.alternate({"fastgd": ours_one_pass, "fastgd_in_order": lambda: ours_one_pass(False),
                                       "river": river_pass}, repeats, warmup=1)
            online = f"one online pass over {n_river} rows in memory"
            rep.pair("file", online, f"fastgd[{backend}] sgd partial_fit", times["fastgd"],
                     "River LogisticRegression(SGD).learn_one", times["river"],
                     "River's feature dicts are built before the timing; fastgd shuffles the rows (its default)")
            # River learns from the rows in the order they come: the same updates in the same order
            rep.pair("file", online, f"fastgd[{backend}] sgd partial_fit, shuffle=False", times["fastgd_in_order"],
                     "River LogisticRegression(SGD).learn_one", times["river"],
                     "both step through the rows in stored order: the same sequence of updates")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
