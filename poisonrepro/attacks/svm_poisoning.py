"""Poisoning attack against SVMs: Biggio, Nelson, Laskov, "Poisoning Attacks against Support
Vector Machines", ICML 2012, Algorithm 1 with the gradient of Eq. (10).

The attacker adds one point (x_c, y_c) to the training set and moves x_c by gradient ascent on
the hinge loss of the SVM on a validation set,

    L(x_c) = sum_k max(0, 1 - y_k f_{x_c}(x_k)).

The gradient follows from keeping the KKT conditions of the margin support vectors S satisfied
while x_c moves (Sec. 3 of the paper): with Q_ij = y_i y_j K(x_i, x_j),

    [Q_SS  y_S] [d alpha_S / du]     [dQ_Sc/du alpha_c]
    [y_S^T  0 ] [   d b / du   ] = - [       0        ]

and for every validation point k with a positive hinge loss,

    d g_k / du = Q_kS d alpha_S/du + dQ_kc/du alpha_c + y_k db/du,    dL/du = - sum_k d g_k/du,

assuming, as the paper does, that the sets of margin, error and reserve vectors do not change
for an infinitesimal move of x_c. Eq. (10) also holds alpha_c fixed, which is exact when x_c is
an error vector (alpha_c = C); when x_c is a margin vector we add its own KKT row (see
``attack_gradient``). Deviation: the paper updates the SVM with the
incremental SVM of Cauwenberghs and Poggio (2001); here it is retrained from scratch with
scikit-learn's ``SVC`` at every step (the same solution, more compute).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.svm import SVC

from ..registry import register_attack

KERNELS = ("linear", "rbf")


def fit_svm(X, y, *, kernel: str, C: float, gamma: float) -> SVC:
    """An SVM with labels in {-1, +1}; a tight tolerance keeps the KKT conditions accurate."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r}: allowed values are {', '.join(KERNELS)}")
    return SVC(kernel=kernel, C=C, gamma=gamma, tol=1e-10).fit(X, y)


def kernel_matrix(A, B, kernel: str, gamma: float) -> np.ndarray:
    if kernel == "linear":
        return A @ B.T
    d2 = (A ** 2).sum(1)[:, None] + (B ** 2).sum(1)[None, :] - 2 * A @ B.T
    return np.exp(-gamma * np.maximum(d2, 0))


def kernel_grad(X, u, kernel: str, gamma: float) -> np.ndarray:
    """d K(x_i, u) / du for every row x_i of X: shape [n, d]."""
    if kernel == "linear":
        return X.copy()
    k = kernel_matrix(X, u[None, :], kernel, gamma)  # [n, 1]
    return 2 * gamma * (X - u[None, :]) * k


def hinge_loss(clf: SVC, X, y) -> float:
    return float(np.maximum(0, 1 - y * clf.decision_function(X)).sum())


def error_rate(clf: SVC, X, y) -> float:
    return float((np.sign(clf.decision_function(X)) != y).mean())


def _self_kernel_grad(u, kernel: str, gamma: float) -> np.ndarray:
    """d K(u, u) / du: 2u for the linear kernel, 0 for the RBF kernel."""
    return 2 * u if kernel == "linear" else np.zeros_like(u)


def attack_gradient(clf: SVC, X, y, c: int, X_val, y_val, *, kernel: str, C: float, gamma: float,
                    tol: float = 1e-6) -> np.ndarray:
    """dL/dx_c for the SVM ``clf`` trained on (X, y), whose row ``c`` is the attack point.

    With alpha_c = C (x_c an error vector) this is Eq. (10). Where x_c is itself a margin
    support vector (0 < alpha_c < C, common in high dimension, where the SVM can absorb the
    point), alpha_c moves with x_c; its own KKT row is then added to the linear system, which
    keeps the derivative exact under the paper's assumption that no point changes set."""
    alpha = np.zeros(len(y))
    alpha[clf.support_] = np.abs(clf.dual_coef_[0])
    alpha_c = alpha[c]
    u = X[c]
    if alpha_c <= tol:  # the attack point is not a support vector: it has no influence
        return np.zeros_like(u)
    g = y_val * clf.decision_function(X_val) - 1
    active = g < 0  # validation points with a positive hinge loss
    if not active.any():
        return np.zeros_like(u)
    y_c = y[c]
    margin = np.flatnonzero((alpha > tol) & (alpha < C - tol))  # may include c
    c_in_margin = c in margin
    # dQ_sc/du alpha_c for every s; for s = c the whole row sum_j dQ_cj/du alpha_j
    def dQ_times_alpha(rows):
        out = (y[rows] * y_c)[:, None] * kernel_grad(X[rows], u, kernel, gamma) * alpha_c
        if c_in_margin:
            at_c = np.flatnonzero(rows == c)
            if len(at_c):
                others = np.flatnonzero(alpha > tol)
                others = others[others != c]
                row_c = ((y[others] * y_c * alpha[others])[:, None] * kernel_grad(X[others], u, kernel, gamma)).sum(0)
                out[at_c[0]] = row_c + _self_kernel_grad(u, kernel, gamma) * alpha_c
        return out
    yv = y_val[active]
    # the attack point's own column: dQ_kc/du alpha_c
    grad_g = (yv * y_c)[:, None] * kernel_grad(X_val[active], u, kernel, gamma) * alpha_c
    if len(margin):
        Xs, ys = X[margin], y[margin]
        Q_ss = (ys[:, None] * ys[None, :]) * kernel_matrix(Xs, Xs, kernel, gamma)
        A = np.block([[Q_ss, ys[:, None]], [ys[None, :], np.zeros((1, 1))]])
        rhs = -np.vstack([dQ_times_alpha(margin), np.zeros((1, u.size))])
        sol = np.linalg.lstsq(A, rhs, rcond=None)[0]               # [s+1, d]
        d_alpha, d_b = sol[:-1], sol[-1]
        Q_ks = (yv[:, None] * ys[None, :]) * kernel_matrix(X_val[active], Xs, kernel, gamma)
        grad_g = grad_g + Q_ks @ d_alpha + yv[:, None] * d_b[None, :]
    return -grad_g.sum(0)


@dataclass
class Trajectory:
    """The attack point and the SVM's errors at every iteration of Algorithm 1."""
    points: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_error: list = field(default_factory=list)
    test_error: list = field(default_factory=list)

    def as_arrays(self) -> dict:
        return {k: np.asarray(v) for k, v in self.__dict__.items()}


@register_attack("svm_poisoning", paper="Biggio, Nelson, Laskov 2012", notebook="05_biggio_svm",
                 summary="gradient ascent on an SVM's validation hinge loss (Algorithm 1)",
                 timing="poisoning", goal="untargeted", knowledge="white-box", universality="individual",
                 influence="causative", violation="availability", specificity="indiscriminate")
def poison_svm(X_tr, y_tr, X_val, y_val, x0, y_c, *, kernel: str, C: float, gamma: float, step: float,
               max_iter: int, eps: float = 1e-6, patience: int = 10, box=(0.0, 1.0),
               X_test=None, y_test=None) -> Trajectory:
    """Algorithm 1: move the attack point x_c (label ``y_c``) from ``x0`` by steps of length
    ``step`` along the normalised gradient, projected onto the feasible ``box``; stop after
    ``max_iter`` steps or once L has risen by less than ``eps`` for ``patience`` steps in a row
    (the paper stops at the first such step; the patience tolerates single non-ascending steps
    caused by the projection)."""
    if y_c not in (-1, 1):
        raise ValueError(f"y_c={y_c}: labels are -1 and +1")
    x = np.clip(np.asarray(x0, float).copy(), *box)
    traj = Trajectory()
    stall = 0
    for it in range(max_iter + 1):
        X = np.vstack([X_tr, x[None, :]])
        y = np.append(y_tr, y_c)
        clf = fit_svm(X, y, kernel=kernel, C=C, gamma=gamma)
        loss = hinge_loss(clf, X_val, y_val)
        if traj.val_loss:
            stall = stall + 1 if loss - traj.val_loss[-1] < eps else 0
        traj.points.append(x.copy())
        traj.val_loss.append(loss)
        traj.val_error.append(error_rate(clf, X_val, y_val))
        if X_test is not None:
            traj.test_error.append(error_rate(clf, X_test, y_test))
        if it == max_iter or stall >= patience:
            break
        grad = attack_gradient(clf, X, y, len(y) - 1, X_val, y_val, kernel=kernel, C=C, gamma=gamma)
        norm = np.linalg.norm(grad)
        if norm == 0:
            break
        x = np.clip(x + step * grad / norm, *box)
    return traj
