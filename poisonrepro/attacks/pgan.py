"""pGAN: L. Munoz-Gonzalez, B. Pfitzner, M. Russo, J. Carnerero-Cano, E. C. Lupu, "Poisoning
Attacks with Generative Adversarial Nets" (2019, arXiv:1906.07773), the three-player game of
the lecture deck "Data Poisoning: Attacks and Defenses" (Xingjun Ma, Fudan University; slide "pGAN"):

    min_G max_{D, C}  alpha V(D, G) + (1 - alpha) W(C, G)
    V(D, G) = E_z[log(1 - D(G(z | Y_p)))] + E_{x ~ p(x | Y_p)}[log D(x | Y_p)]
    W(C, G) = -( lambda E_z[L_C(G(z | Y_p))] + (1 - lambda) E_x[L_C(x)] )

The generator G makes poisoning points carrying the label Y_p; the discriminator D tells them
from genuine points of class Y_p (the detectability constraint); the classifier C is trained on
genuine data plus the poisons (it maximises W, i.e. minimises its loss on both); G minimises
alpha V + (1 - alpha) W, so it trades realism (alpha -> 1: a plain GAN of class Y_p) against
raising C's loss on the poisons (alpha -> 0). G is one network for the single class Y_p (the
conditioning of the equations is fixed). Deviation: G's adversarial term uses the usual
non-saturating form, -log D(G(z)), instead of log(1 - D(G(z))), and D uses dropout. The paper's architectures and
schedules are unconfirmed (the paper has no public code): small MLPs and Adam here, ours.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_attack


def _mlp(d_in, hidden, d_out, out=None, dropout=0.0):
    drop = [nn.Dropout(dropout)] if dropout else []
    layers = [nn.Linear(d_in, hidden), nn.LeakyReLU(0.2), *drop, nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), *drop,
              nn.Linear(hidden, d_out)]
    return nn.Sequential(*layers, *([out] if out is not None else []))


class PGAN(nn.Module):
    """Generator (z -> [0, 1]^d), discriminator (logit: genuine class-Y_p point) and the
    target classifier C (logistic regression, logit of class 1)."""

    def __init__(self, n_features: int, z_dim: int, hidden: int):
        super().__init__()
        self.z_dim = z_dim
        self.G = _mlp(z_dim, hidden, n_features, nn.Sigmoid())
        self.D = _mlp(n_features, hidden, 1, dropout=0.3)  # dropout in D: G collapsed to one point without it
        self.C = nn.Linear(n_features, 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        # z is drawn on the CPU (the generator's stream, whatever the device), then joins G
        z = torch.randn(n, self.z_dim, generator=generator)
        return self.G(z.to(next(self.G.parameters()).device))


def _frozen(model: PGAN, frozen: bool):
    for p in (*model.D.parameters(), *model.C.parameters()):
        p.requires_grad_(not frozen)


def _bce(logits, value: float):
    return F.binary_cross_entropy_with_logits(logits.squeeze(1),
                                              torch.full((len(logits),), float(value), device=logits.device))


@register_attack("pgan", paper="Munoz-Gonzalez et al. 2019", notebook="07_pgan",
                 summary="a generator, a discriminator and the target classifier in a three-player game; alpha "
                         "trades detectability against effectiveness",
                 timing="poisoning", goal="untargeted", knowledge="white-box", universality="universal",
                 influence="causative", violation="availability", specificity="indiscriminate")
def train_pgan(model: PGAN, X_class: torch.Tensor, X_tr: torch.Tensor, y_tr: torch.Tensor, label_p: int, *,
               alpha: float, lam: float, steps: int, batch: int, lr: float, seed: int, bar=None) -> dict:
    """``steps`` rounds of one D step, one C step and one G step (Adam). ``X_class``: genuine
    points of class Y_p (D's reference); ``X_tr, y_tr``: the genuine training data C sees.
    Returns the loss history."""
    if not 0 <= alpha <= 1 or not 0 <= lam <= 1:
        raise ValueError(f"alpha={alpha}, lambda={lam}: both must lie in [0, 1]")
    model.train()
    g = torch.Generator().manual_seed(seed)
    opt = {k: torch.optim.Adam(getattr(model, k).parameters(), lr=lr, betas=(0.5, 0.999)) for k in "GDC"}
    yp = torch.full((batch,), float(label_p), device=next(model.C.parameters()).device)
    hist = {"D": [], "C": [], "G_adv": [], "G_cls": []}
    for _ in range(steps):
        real = X_class[torch.randint(len(X_class), (batch,), generator=g)]
        idx = torch.randint(len(X_tr), (batch,), generator=g)
        # D: genuine class-Y_p points vs poisons (no graph through G: only D and C learn from these)
        with torch.no_grad():
            fake = model.sample(batch, g)
        d_loss = _bce(model.D(real), 1) + _bce(model.D(fake), 0)
        opt["D"].zero_grad()
        d_loss.backward()
        opt["D"].step()
        # C: minimise lambda * loss on poisons (label Y_p) + (1 - lambda) * loss on genuine data
        c_loss = lam * F.binary_cross_entropy_with_logits(model.C(fake).squeeze(1), yp) + \
            (1 - lam) * F.binary_cross_entropy_with_logits(model.C(X_tr[idx]).squeeze(1), y_tr[idx].float())
        opt["C"].zero_grad()
        c_loss.backward()
        opt["C"].step()
        # G: alpha * (look genuine to D) - (1 - alpha) * lambda * (C's loss on the poisons)
        fake = model.sample(batch, g)
        _frozen(model, True)  # G's step needs no gradients of D's and C's weights (they were discarded)
        g_adv = _bce(model.D(fake), 1)
        g_cls = F.binary_cross_entropy_with_logits(model.C(fake).squeeze(1), yp)
        g_loss = alpha * g_adv - (1 - alpha) * lam * g_cls
        opt["G"].zero_grad()
        g_loss.backward()
        opt["G"].step()
        _frozen(model, False)
        for k, v in (("D", d_loss), ("C", c_loss), ("G_adv", g_adv), ("G_cls", g_cls)):
            hist[k].append(v.item())
        if bar is not None:
            bar.update(1)
    return hist
