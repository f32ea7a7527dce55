"""The learning rate: too small, good, too large.

The worked example of the notes (x = [1, 2], y = [2, 4], full-batch gradient descent from
w = b = 0). Its loss has curvatures 6.85 and 0.15 (the Hessian's eigenvalues), so a step
larger than 2 / 6.85 = 0.29 overshoots further each iteration: the loss grows geometrically
until it overflows, and fastgd raises ``DivergenceError`` naming the epoch (the estimator keeps
its last finite epoch).

    python examples/plot_learning_rates.py [OUT_DIR]
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fastgd import DivergenceError, LinearRegression  # noqa: E402
from fastgd.plot import plot_learning_curves, plot_loss_surface  # noqa: E402


def main(out_dir="."):
    X, y = np.array([[1.0], [2.0]]), np.array([2.0, 4.0])
    rates = {"too small, lr=0.01": 0.01, "good, lr=0.1": 0.1, "too large, lr=0.32": 0.32}
    fits = {}
    for label, lr in rates.items():
        reg = LinearRegression(optimizer="sgd", learning_rate=lr, max_iter=60, tol=None, record_path=True)
        fits[label] = reg.fit(X, y)
        print(f"{label}: loss after 60 epochs {reg.loss_curve_[-1]:.3g}")
    try:  # trained on, the too-large rate overflows
        LinearRegression(optimizer="sgd", learning_rate=0.32, max_iter=5000, tol=None).fit(X, y)
    except DivergenceError as exc:
        print(f"lr=0.32, trained on: DivergenceError in epoch {exc.epoch}")
        fits[f"too large, lr=0.32 (DivergenceError in epoch {exc.epoch})"] = fits.pop("too large, lr=0.32")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    plot_learning_curves(fits, log_scale=True, ax=left)
    left.legend(fontsize="small", loc="center right")
    left.set_title("Learning curves, 60 epochs")
    # the first 12 epochs of each path (the divergent one leaves the picture)
    paths = {label: np.column_stack([reg.coef_path_[:13, 0], reg.intercept_path_[:13]]) for label, reg in fits.items()}
    plot_loss_surface(X, y, paths=paths, levels=15, extent=(-0.5, 3.5, -1.5, 2.0), ax=right)
    right.set_title("The first 12 steps on J(w, b)")
    fig.tight_layout()
    path = os.path.join(out_dir, "learning_rates.png")
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
