"""Optimizer trajectories equal a hand-written ``torch.optim`` training loop on the same batches.

``shuffle=False`` makes the batches the data in order, so the loop below sees exactly the
batches fastgd sees. The loss of a batch is the mean over its samples of the
(sample-weighted, weights normalised to mean 1) per-sample loss: squared error summed over
outputs, BCE-with-logits, cross-entropy. Coupled L2 is ``weight_decay`` of the weight group
(the intercept is in its own group without decay); clipping is ``clip_grad_norm_`` on the
data gradient. Parameters are compared after 3 epochs, float64, rtol 1e-10.
"""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402

from fastgd import LinearRegression, LogisticRegression  # noqa: E402
from fastgd.optim import OPTIMIZER_NAMES, SGD, AdaGrad, Adam, Adamax, AdamW, NAdam, RMSprop  # noqa: E402
from fastgd.schedules import CosineAnnealing, CosineWarmRestarts, OneCycle, StepDecay, Warmup  # noqa: E402

N, P, EPOCHS, LR = 20, 4, 3, 0.05

# Non-default hyper-parameters everywhere, so a hyper-parameter wired to the wrong slot shows.
# name -> (fastgd optimizer, torch optimizer factory taking (param groups, lr))
OPTIMIZERS = {
    "sgd": (SGD(), lambda g, lr: torch.optim.SGD(g, lr=lr)),
    "momentum": (SGD(momentum=0.8), lambda g, lr: torch.optim.SGD(g, lr=lr, momentum=0.8)),
    "nesterov": (SGD(momentum=0.8, nesterov=True),
                 lambda g, lr: torch.optim.SGD(g, lr=lr, momentum=0.8, nesterov=True)),
    "adagrad": (AdaGrad(eps=1e-9, initial_accumulator=0.1),
                lambda g, lr: torch.optim.Adagrad(g, lr=lr, eps=1e-9, initial_accumulator_value=0.1)),
    "rmsprop": (RMSprop(rho=0.9, eps=1e-6), lambda g, lr: torch.optim.RMSprop(g, lr=lr, alpha=0.9, eps=1e-6)),
    "adam": (Adam(beta1=0.8, beta2=0.95, eps=1e-6),
             lambda g, lr: torch.optim.Adam(g, lr=lr, betas=(0.8, 0.95), eps=1e-6)),
    "amsgrad": (Adam(beta1=0.8, beta2=0.95, eps=1e-6, amsgrad=True),
                lambda g, lr: torch.optim.Adam(g, lr=lr, betas=(0.8, 0.95), eps=1e-6, amsgrad=True)),
    "adamw": (AdamW(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.3),
              lambda g, lr: torch.optim.AdamW(g, lr=lr, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3)),
    "adamax": (Adamax(beta1=0.8, beta2=0.95, eps=1e-6),
               lambda g, lr: torch.optim.Adamax(g, lr=lr, betas=(0.8, 0.95), eps=1e-6)),
    # a large momentum_decay, so that the mu-product schedule moves within a few steps
    "nadam": (NAdam(beta1=0.8, beta2=0.95, eps=1e-6, momentum_decay=0.05),
              lambda g, lr: torch.optim.NAdam(g, lr=lr, betas=(0.8, 0.95), eps=1e-6, momentum_decay=0.05)),
}


def test_every_registered_optimizer_is_checked_against_torch():
    assert set(OPTIMIZERS) == set(OPTIMIZER_NAMES)
LOSSES = ["mse_1d", "mse_3", "bce", "cross_entropy"]
L2 = 0.2


def _data(loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, P))
    W = rng.standard_normal((P, 3))
    if loss == "mse_1d":
        y = X @ W[:, 0] + 1.0 + 0.1 * rng.standard_normal(N)
    elif loss == "mse_3":
        y = X @ W + np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal((N, 3))
    elif loss == "bce":
        y = (X @ W[:, 0] + 0.5 * rng.standard_normal(N) > 0).astype(np.int64)
    else:
        y = np.argmax(X @ W + 0.5 * rng.standard_normal((N, 3)), axis=1)
    sw = rng.uniform(0.2, 3.0, N)
    return X, y, sw


def torch_train(X, y, loss, optimizer, batch_size, l2=0.0, clip_norm=None, sw=None, schedule=None,
                epochs=EPOCHS, lr=LR):
    """Plain torch training loop; returns (W (P, K), b (K,)) as NumPy arrays and the learning
    curve: per epoch, the running training loss (each batch at the parameters before its
    step, weighted by its size) plus the coupled L2 penalty at the epoch's start."""
    # float64 throughout, the optimizers' scalar state too (NAdam's mu product follows the
    # default dtype)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _torch_train(X, y, loss, optimizer, batch_size, l2, clip_norm, sw, schedule, epochs, lr)
    finally:
        torch.set_default_dtype(default_dtype)


def _torch_train(X, y, loss, optimizer, batch_size, l2, clip_norm, sw, schedule, epochs, lr):
    X_t = torch.tensor(X, dtype=torch.float64)
    K = {"mse_1d": 1, "mse_3": 3, "bce": 1, "cross_entropy": 3}[loss]
    W = torch.zeros((X.shape[1], K), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    if loss in ("mse_1d", "mse_3"):
        y_t = torch.tensor(np.asarray(y, dtype=np.float64).reshape(len(y), -1))
    elif loss == "bce":
        y_t = torch.tensor(np.asarray(y, dtype=np.float64))
    else:
        y_t = torch.tensor(np.asarray(y, dtype=np.int64))
    w_t = torch.ones(len(y), dtype=torch.float64) if sw is None else torch.tensor(sw / np.mean(sw))
    decoupled = optimizer == "adamw"  # AdamW's weight_decay is its own decay, not coupled L2
    # the weight group takes the optimizer's default weight_decay for AdamW (its decoupled
    # decay, 0.3 here) and the coupled L2 strength otherwise; the intercept is never decayed
    groups = [{"params": [W]} if decoupled else {"params": [W], "weight_decay": l2},
              {"params": [b], "weight_decay": 0.0}]
    opt = OPTIMIZERS[optimizer][1](groups, lr)
    bs = len(y) if batch_size is None else batch_size
    step = 0
    curve = []
    for _ in range(epochs):
        running = 0.0
        penalty = 0.5 * l2 * float((W.detach() ** 2).sum())
        for start in range(0, len(y), bs):
            sl = slice(start, start + bs)
            if schedule is not None:
                for group in opt.param_groups:
                    group["lr"] = float(schedule.lr(lr, step))
            z = X_t[sl] @ W + b
            if loss in ("mse_1d", "mse_3"):
                per_sample = ((z - y_t[sl]) ** 2).sum(dim=1)
            elif loss == "bce":
                per_sample = F.binary_cross_entropy_with_logits(z[:, 0], y_t[sl], reduction="none")
            else:
                per_sample = F.cross_entropy(z, y_t[sl], reduction="none")
            batch_loss = (w_t[sl] * per_sample).mean()
            running += float(batch_loss.detach()) * len(per_sample)
            opt.zero_grad()
            batch_loss.backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_([W, b], clip_norm)
            if decoupled and l2 > 0:
                with torch.no_grad():
                    W.grad.add_(W, alpha=l2)  # coupled L2 on top of AdamW's decoupled decay
            opt.step()
            step += 1
        curve.append(running / len(y) + penalty)
    return W.detach().numpy().copy(), b.detach().numpy().copy(), curve


def fastgd_train(X, y, loss, optimizer, batch_size, l2=0.0, clip_norm=None, sw=None, schedule="constant",
                 epochs=EPOCHS, lr=LR):
    Est = LinearRegression if loss.startswith("mse") else LogisticRegression
    est = Est(optimizer=OPTIMIZERS[optimizer][0], learning_rate=lr, batch_size=batch_size, max_iter=epochs,
              tol=None, schedule=schedule, penalty="l2" if l2 > 0 else None, alpha=l2, clip_norm=clip_norm,
              shuffle=False)
    est.fit(X, y, sample_weight=sw)
    assert est.t_ == epochs * -(-len(y) // (len(y) if batch_size is None else batch_size))
    coef = np.asarray(est.coef_, dtype=np.float64)
    W = coef.reshape(-1, 1) if coef.ndim == 1 else coef.T
    return W, np.atleast_1d(est.intercept_).astype(np.float64), est.loss_curve_


def _compare(got, want):
    (Wg, bg, curve_g), (Wt, bt, curve_t) = got, want
    assert Wg.shape == Wt.shape and bg.shape == bt.shape
    assert_allclose(Wg, Wt, rtol=1e-10, atol=1e-13)
    assert_allclose(bg, bt, rtol=1e-10, atol=1e-13)
    assert_allclose(curve_g, curve_t, rtol=1e-10, atol=0, err_msg="loss_curve_")


# Full cross-product: 8 optimizers x 4 losses x 3 batch sizes x {no penalty, L2} x {no clip,
# clip} = 384 torch runs of 3 epochs on 20 samples (a few seconds in all).
@pytest.mark.parametrize("clip_norm", [None, 0.5], ids=["noclip", "clip"])
@pytest.mark.parametrize("l2", [0.0, L2], ids=["nopenalty", "l2"])
@pytest.mark.parametrize("batch_size", [1, 7, None], ids=["b1", "b7", "full"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_trajectory_equals_torch(optimizer, loss, batch_size, l2, clip_norm):
    X, y, _ = _data(loss)
    _compare(fastgd_train(X, y, loss, optimizer, batch_size, l2, clip_norm),
             torch_train(X, y, loss, optimizer, batch_size, l2, clip_norm))


@pytest.mark.parametrize("batch_size", [1, 7], ids=["b1", "b7"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("optimizer", ["momentum", "adagrad", "adam", "adamw"])
def test_sample_weighted_trajectory_equals_torch(optimizer, loss, batch_size):
    X, y, sw = _data(loss)
    _compare(fastgd_train(X, y, loss, optimizer, batch_size, L2, 0.5, sw=sw),
             torch_train(X, y, loss, optimizer, batch_size, L2, 0.5, sw=sw))


# 3 epochs of 20 samples in batches of 7 = 9 steps; batch size 1 = 60 steps.
SCHEDULES = [
    Warmup(CosineAnnealing(T_max=30), warmup=10),  # warm-up, cosine, then flat at 0 (b1)
    Warmup(CosineAnnealing(T_max=5, lr_min=0.01), warmup=3),
    StepDecay(step_size=4, gamma=0.5, unit="step"),
    CosineWarmRestarts(T_0=2, T_mult=2, lr_min=0.01, unit="step"),
    OneCycle(max_lr=0.1, pct_start=0.4, total_steps=9),
]


@pytest.mark.parametrize("batch_size", [1, 7], ids=["b1", "b7"])
@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "rmsprop", "adam", "adamw", "adamax", "nadam"])
def test_per_step_schedule_equals_torch(optimizer, schedule, batch_size):
    X, y, _ = _data("mse_3")
    _compare(fastgd_train(X, y, "mse_3", optimizer, batch_size, L2, None, schedule=schedule),
             torch_train(X, y, "mse_3", optimizer, batch_size, L2, None, schedule=schedule))


def test_reference_loop_is_sensitive():
    """The comparison is not vacuous: options change the torch trajectory itself."""
    X, y, _ = _data("mse_3")
    base = torch_train(X, y, "mse_3", "adam", 7)
    for kw in [dict(l2=L2), dict(clip_norm=0.5), dict(schedule=SCHEDULES[0]), dict(batch_size=1)]:
        args = {"batch_size": 7, **kw}
        other = torch_train(X, y, "mse_3", "adam", **args)
        assert not np.allclose(other[0], base[0], rtol=1e-6), kw
    for a, b in itertools.combinations(OPTIMIZERS, 2):
        assert not np.allclose(torch_train(X, y, "mse_3", a, 7)[0], torch_train(X, y, "mse_3", b, 7)[0],
                               rtol=1e-6), (a, b)
