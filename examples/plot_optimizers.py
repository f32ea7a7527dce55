"""SGD, momentum, Nesterov, AdaGrad, RMSprop and Adam on an ill-conditioned loss surface.

With x away from zero (mean 1.5, spread 0.5) the weight and the intercept of y = w x + b are
coupled: J(w, b) is a narrow valley (the Hessian's eigenvalues are 7.1 and 0.13, a condition
number of 54). Plain gradient descent at the largest stable rate zigzags across the valley;
momentum and Nesterov build up speed along it (and overshoot); AdaGrad, RMSprop and Adam
rescale each coordinate and head for the valley along the diagonal. Full-batch, 100 epochs
each, from w = b = 0, so the paths show the optimizers, not sampling noise.

    python examples/plot_optimizers.py [OUT_DIR]
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
    rng = np.random.default_rng(0)
    X = rng.normal(1.5, 0.5, size=(100, 1))
    y = 2.0 * X[:, 0] + 1.0 + rng.normal(0.0, 0.3, 100)
    rates = {"sgd": 0.27, "momentum": 0.03, "nesterov": 0.03, "adagrad": 1.0, "rmsprop": 0.05, "adam": 0.2}
    fits = {}
    for name, lr in rates.items():
        reg = LinearRegression(optimizer=name, learning_rate=lr, max_iter=100, tol=None, record_path=True)
        fits[f"{name}, lr={lr:g}"] = reg.fit(X, y)
        print(f"{name:<9} lr={lr:<5g} loss after 100 epochs {reg.loss_curve_[-1]:.5f}")
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    surfaces = [ax for k, ax in enumerate(axes.ravel()) if k not in (3, 7)]
    for ax, (label, reg) in zip(surfaces, fits.items()):
        plot_loss_surface(X, y, paths={label: reg}, levels=12, extent=(-0.5, 3.5, -1.0, 3.0), resolution=60, ax=ax)
        ax.set_title(label)
    axes[1, 3].remove()
    plot_learning_curves(fits, log_scale=True, ax=axes[0, 3])
    axes[0, 3].legend(fontsize="x-small")
    axes[0, 3].set_title("Learning curves")
    fig.suptitle("Optimizers on an ill-conditioned J(w, b) (condition number 54), 100 full-batch epochs")
    fig.tight_layout()
    path = os.path.join(out_dir, "optimizers.png")
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
