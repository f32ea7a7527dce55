"""Every learning-rate schedule, and reduce-on-plateau as it behaves in a fit.

Left: the rate each step gets from each schedule (defaults, base rate 0.1, 1,000 steps of 50
per epoch), drawn from the same formulas the kernels compile. Right: ``ReduceLROnPlateau``
depends on the losses, so it is shown from a fit: a ``History`` callback records the rate in
force after each epoch next to the learning curve.

    python examples/plot_schedules.py [OUT_DIR]
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import make_regression  # noqa: E402

from fastgd import LinearRegression  # noqa: E402
from fastgd.callbacks import History  # noqa: E402
from fastgd.plot import plot_schedule  # noqa: E402
from fastgd.schedules import (CosineAnnealing, ExponentialDecay, InverseScaling, PolynomialDecay,  # noqa: E402
                              ReduceLROnPlateau, StepDecay, Warmup)


def main(out_dir="."):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    schedules = ["constant", StepDecay(step_size=5, gamma=0.5), ExponentialDecay(gamma=0.9),
                 PolynomialDecay(power=2.0), CosineAnnealing(), InverseScaling(power_t=0.5),
                 Warmup(CosineAnnealing(), warmup=100)]
    for schedule in schedules:
        plot_schedule(schedule, 1000, learning_rate=0.1, steps_per_epoch=50, ax=left)
    left.legend(fontsize="x-small")
    left.set_title("Learning-rate schedules")

    X, y = make_regression(n_samples=400, n_features=10, noise=20.0, random_state=0)
    history = History()
    schedule = ReduceLROnPlateau(factor=0.5, patience=3, threshold=1e-3)
    LinearRegression(optimizer="sgd", learning_rate=0.02, batch_size=8, schedule=schedule, max_iter=60, tol=None,
                     random_state=0, callbacks=[history]).fit(X / 3, y / 100)
    right.step(history.epochs, history.learning_rates, where="post", color="C3", label=repr(schedule))
    right.set_xlabel("epoch")
    right.set_ylabel("learning rate in force")
    right.set_yscale("log")
    curve = right.twinx()
    curve.plot(history.epochs, history.losses, color="C0", label="training loss")
    curve.set_yscale("log")
    curve.set_ylabel("training loss")
    right.legend(handles=right.get_lines() + curve.get_lines(), fontsize="x-small")
    right.set_title("ReduceLROnPlateau in a fit (History callback)")
    fig.tight_layout()
    path = os.path.join(out_dir, "schedules.png")
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"plateau: rates {sorted(set(history.learning_rates.round(6).tolist()), reverse=True)}")
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
