"""Pair the rows of ``bench.compare`` reports taken on two trees, run alternately.

``python -m bench.pair_compare DIR [--before base] [--after main]``

``DIR`` holds four ``python -m bench.compare --out`` directories, ``base-1``, ``main-1``,
``base-2``, ``main-2``, made in that order (B A B A) on the same machine, each run from its
own tree::

    for i in 1 2; do
      (cd OLD_TREE && PYTHONPATH=. python -m bench.compare --quick --out DIR/base-$i)
      (cd NEW_TREE && PYTHONPATH=. python -m bench.compare --quick --out DIR/main-$i)
    done

Every ratio is peer time / fastgd time measured in one process, so a slow phase of a shared
machine hits both sides of it. For each row this prints both runs' ratios of each tree and
the change (geometric means, after / before); ``worse`` marks a change below 0.97 with every
after-run below every before-run, ``<`` one below 0.97 within the runs' spread.
"""

import argparse
import json
import math
import os


def _rows(path):
    with open(path) as f:
        report = json.load(f)
    return {(r["section"], r["workload"], r["fastgd"], r["peer"]): r["ratio"] for r in report["rows"]}


def _geomean(values):
    if any(v is None or not v > 0 for v in values):
        return math.nan
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.pair_compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--before", default="base")
    ap.add_argument("--after", default="main")
    args = ap.parse_args(argv)
    before = [_rows(os.path.join(args.dir, f"{args.before}-{i}", "compare.json")) for i in (1, 2)]
    after = [_rows(os.path.join(args.dir, f"{args.after}-{i}", "compare.json")) for i in (1, 2)]
    for key in before[0]:
        b = [run.get(key) for run in before]
        a = [run.get(key) for run in after]
        if all(v is None for v in a + b):
            continue
        change = _geomean(a) / _geomean(b)
        flag = ""
        if change < 0.97:
            flag = " worse" if all(x is not None and y is not None and x < y for x in a for y in b) else " <"
        show = " ".join("   n/a" if v is None else f"{v:7.2f}" for v in b + a)
        print(f"{key[0][:10]:10s} {key[1][:36]:36s} {key[2][:46]:46s} before/after {show}  x{change:5.2f}{flag}")


if __name__ == "__main__":
    main()
