"""The README's "Defaults" table: the estimators at their defaults against scikit-learn.

Rows: scikit-learn's bundled data sets (breast_cancer, wine, iris, digits, diabetes), each raw
and standardised; make_classification and make_regression at 200,000 rows with features at
mixed scales (1e-2 to 1e3, the regression target at scale 1e3), raw and standardised; a
multi-output regression. Columns: test score and fit time of fastgd's defaults and of
scikit-learn's ``LogisticRegression`` (lbfgs) / ``LinearRegression`` on the same split, whether
fastgd warned, and the score of ``partial_fit`` over 10 chunks. Exits with status 1 if a row is
more than 0.01 below scikit-learn's score without a warning.

Run from the repository root (figures depend on the machine and its load)::

    python -m bench.defaults_table            # every row, Markdown table at the end
    python -m bench.defaults_table --quick    # the bundled data sets only
"""

import argparse

from fastgd._defaults_comparison import measure_and_print, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the bundled scikit-learn data sets")
    parser.add_argument("--rows", type=int, default=200_000, help="samples of the generated problems")
    parser.add_argument("--no-partial-fit", action="store_true", help="skip the partial_fit check")
    parser.add_argument("--backend", default="auto", choices=["auto", "numba", "cython", "numpy"],
                        help="fastgd kernel backend")
    args = parser.parse_args(argv)
    _, failing = measure_and_print(rows(generated=not args.quick, n_generated=args.rows,
                                        check_partial_fit=not args.no_partial_fit, backend=args.backend))
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
