"""Batch, stochastic and mini-batch gradient descent on one loss surface J(w, b).

The same data, the same start (w = b = 0), the same number of samples seen (8 epochs): batch
gradient descent takes one exact step per epoch and moves smoothly; stochastic gradient
descent (batch_size=1) takes one noisy step per sample and zigzags around the minimum;
mini-batch (batch_size=16) is in between. ``record_path="step"`` keeps every step.

    python examples/plot_gd_variants.py [OUT_DIR]
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fastgd import LinearRegression  # noqa: E402
from fastgd.plot import plot_loss_surface  # noqa: E402


def main(out_dir="."):
    rng = np.random.default_rng(0)
    X = rng.normal(1.0, 1.0, size=(64, 1))
    y = 2.0 * X[:, 0] - 1.0 + rng.normal(0.0, 0.5, 64)
    variants = {
        "batch (all 64 samples per step)": dict(batch_size=None, learning_rate=0.2),
        "mini-batch (16 per step)": dict(batch_size=16, learning_rate=0.1),
        "stochastic (1 per step)": dict(batch_size=1, learning_rate=0.02),
    }
    paths = {}
    for label, kw in variants.items():
        reg = LinearRegression(optimizer="sgd", max_iter=8, tol=None, random_state=0, record_path="step", **kw)
        paths[label] = reg.fit(X, y)
        print(f"{label}: {reg.t_} steps, final loss {reg.loss_curve_[-1]:.4f}")
    fig, ax = plt.subplots(figsize=(6.5, 5))
    plot_loss_surface(X, y, paths=paths, levels=15, ax=ax)
    ax.set_title("Batch, mini-batch and stochastic GD, 8 epochs each")
    fig.tight_layout()
    path = os.path.join(out_dir, "gd_variants.png")
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
