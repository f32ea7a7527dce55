"""The worked example of the theory notes, trained by fastgd: its learning curve, and the path
full-batch gradient descent takes down the loss surface J(w, b).

Data x = [1, 2], y = [2, 4]; model y = w x + b from w = b = 0; loss (1/N) * sum (y_hat - y)^2;
learning rate 0.1. The first iterations are the notes' (w, b) = (1.0, 0.6), (1.32, 0.78),
(1.426, 0.828), (1.4646, 0.8346), and the path ends at the least-squares solution w = 2, b = 0.

    python examples/plot_learning_curve.py [OUT_DIR]
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fastgd import LinearRegression  # noqa: E402
from fastgd.plot import plot_learning_curves, plot_loss_surface  # noqa: E402


def main(out_dir="."):
    X, y = np.array([[1.0], [2.0]]), np.array([2.0, 4.0])
    reg = LinearRegression(optimizer="sgd", learning_rate=0.1, max_iter=300, tol=None, record_path="step")
    reg.fit(X, y)
    for k in range(1, 5):
        print(f"iteration {k}: w = {reg.coef_path_[k, 0]:.4f}, b = {reg.intercept_path_[k]:.4f}, "
              f"loss after it = {reg.loss_curve_[k]:.6g}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    plot_learning_curves({"full-batch GD, lr 0.1": reg}, log_scale=True, ax=left)
    left.set_title("Learning curve of the worked example")
    plot_loss_surface(X, y, paths={"full-batch GD, lr 0.1": reg}, extent=(-0.2, 2.5, -1.0, 1.2), levels=15, ax=right)
    right.set_title("Its path down J(w, b)")
    fig.tight_layout()
    path = os.path.join(out_dir, "learning_curve.png")
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
