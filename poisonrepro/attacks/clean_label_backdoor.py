"""The clean-label backdoor: A. Turner, D. Tsipras, A. Madry, "Label-Consistent Backdoor
Attacks", arXiv:1912.02771, 2019, in the setting of the benchmark of A. Schwarzschild, M.
Goldblum, A. Gupta, J. P. Dickerson, T. Goldstein, "Just How Toxic is Data Poisoning? A Unified
Benchmark for Backdoor and Data Poisoning Attacks", ICML 2021 (repository
aks2203/poisoning-benchmark, ``poison_crafting/craft_poisons_clbd.py``).

Turner et al. keep the poisons' true labels and make them hard to learn from their content, so
that the network leans on the trigger instead: each base image x_b of the base class, with its
true label y_b, is first pushed away from its label by L-inf PGD (Madry et al., ICLR 2018) on
an adversarially trained surrogate f,

    x_adv = argmax_{||x - x_b||_inf <= eps, x in [0, 1]}  CE(f(x), y_b)
    x^{k+1} = clip_[0,1]( clip_{x_b +- eps}( x^k + alpha * sign(grad_x CE(f(x^k), y_b)) ) ),

then the trigger patch is pasted, and the victim trains on the poisons with their true label
y_b. At test time the patch is pasted on the target (of another class), which should then be
classified as the base class.

The benchmark's settings (``craft_poisons_clbd.py``, defaults, "the values that were used"
according to ``poison_crafting/README.md``): eps = 8/255, alpha = 2/255, 20 steps, a random
start uniform in [-eps, eps], the summed cross-entropy of the true labels, the surrogate an
adversarially trained ResNet-18 (``pretrained_models/ResNet18_CIFAR10_adv.pth``) in eval mode
without input normalisation, batches of 1000 bases (PGD is per sample, so batches do not
matter); a 5x5 patch (``triggers/clbd.png`` resized) at x = y = 32 - 5 = 27, the bottom-right
corner. After PGD the benchmark pastes the patch into the adversarial image and clips the
*whole* perturbation, trigger included, back into the budget:

    poison = clip_[0,1]( x_b + clip_[-eps,eps]( paste(x_adv, patch) - x_b ) ),

so under the patch a poison moves at most eps towards the patch's pixels (the trigger in the
poisons is a faint version of the one pasted on the target), and everywhere else it is x_adv.
(The benchmark also builds a mask meant to zero the PGD perturbation under the patch, but it
indexes the channel axis, ``mask[:, 27:32, 27:32]`` of an [N, 3, 32, 32] tensor, so the mask
is all ones; the region is overwritten by the patch anyway, so it changes nothing.)

Deviations: PGD runs on the shared crafting loop (``crafting.craft_perturbations``, per-sample
L-inf PGD, ``init="uniform"``), whose random start is projected into [0, 1] before the first
gradient; the benchmark takes its first gradient at the unclipped start x_b + U[-eps, eps].
Turner et al. themselves use a visible trigger (a 3x3 checkerboard in the corners) that is not
clipped to eps, and larger budgets; the benchmark's clipping is kept here as the default
(``clip_trigger=True``).
"""
from __future__ import annotations

import numbers

import torch

from .. import triggers
from ..registry import register_attack
from .evasion_pgd import untargeted_pgd


def _check_inputs(base_images, patch, location, eps):
    if not isinstance(eps, numbers.Real) or not 0 < eps <= 1:
        raise ValueError(f"eps={eps}: an L-inf budget must lie in (0, 1] on the [0, 1] pixel scale "
                         f"(did you mean 8/255?)")
    if not isinstance(base_images, torch.Tensor) or base_images.dim() != 4 or len(base_images) == 0:
        raise ValueError("base_images: need a non-empty tensor [N, C, H, W] (uint8 or floats in [0, 1])")
    if not isinstance(patch, torch.Tensor) or patch.dim() != 3:
        raise ValueError("patch: need a tensor [C, h, w] (see triggers.make_patch)")
    triggers.patch_mask(tuple(base_images.shape[1:]), tuple(patch.shape), *triggers.as_location(location))


def adversarial_bases(model, base_images: torch.Tensor, base_labels: torch.Tensor, *, eps: float = 8 / 255,
                      steps: int = 20, step_size: float = 2 / 255, random_start: bool = True,
                      batch_size: int = 1000, seed: int = 0) -> torch.Tensor:
    """Turner et al.'s first stage: L-inf PGD that raises the surrogate's cross-entropy of each
    base's true label (``evasion_pgd.untargeted_pgd``, in eval mode). Returns floats in [0, 1],
    within eps of the bases."""
    return untargeted_pgd(model, base_images, base_labels, eps=eps, steps=steps, step_size=step_size,
                          random_start=random_start, batch_size=batch_size, seed=seed,
                          desc="clean-label backdoor PGD")


def add_trigger_within_budget(adversarial: torch.Tensor, base_images: torch.Tensor, patch: torch.Tensor,
                              location: tuple[int, int], *, eps: float, clip_trigger: bool = True) -> torch.Tensor:
    """The benchmark's second stage: paste ``patch`` at ``location`` into the adversarial images
    and clip the total perturbation (trigger included) to eps around the bases and to [0, 1].
    ``clip_trigger=False`` leaves the patch whole (Turner et al.'s visible trigger); the
    poisons then exceed eps under the patch."""
    base = base_images.to(adversarial.dtype)
    base = base / 255 if base_images.dtype == torch.uint8 else base
    triggered = triggers.paste_patch(adversarial, patch, *triggers.as_location(location))
    if not clip_trigger:
        return triggered
    return (base + (triggered - base).clamp(-eps, eps)).clamp(0, 1)


@register_attack("clean_label_backdoor",
                 paper="Turner, Tsipras & Madry 2019, Label-Consistent Backdoor Attacks (benchmark: "
                       "Schwarzschild et al. 2021)",
                 notebook="04_witches_brew",
                 summary="PGD on an adversarially trained surrogate makes base images hard to classify "
                         "(labels kept), then a trigger patch is added within the budget; the patch on "
                         "the target at test time",
                 timing="poisoning", goal="targeted", knowledge="gray-box", universality="universal",
                 influence="causative", violation="integrity", specificity="targeted")
def craft_poisons(model, base_images: torch.Tensor, base_labels: torch.Tensor, patch: torch.Tensor, *,
                  location: tuple[int, int] = triggers.CLBD_LOCATION, eps: float = 8 / 255, steps: int = 20,
                  step_size: float = 2 / 255, random_start: bool = True, clip_trigger: bool = True,
                  target_class: int | None = None, batch_size: int = 1000, seed: int = 0) -> torch.Tensor:
    """Clean-label backdoor poisons (floats in [0, 1], [N, C, H, W]) for ``base_images``
    ([N, C, H, W], uint8 or floats in [0, 1]) with their true ``base_labels``: PGD away from the
    true label on the surrogate ``model`` (``adversarial_bases``), then ``patch`` pasted at
    ``location`` = (x, y) and the whole perturbation clipped to ``eps``
    (``add_trigger_within_budget``). With ``clip_trigger`` (the benchmark's default) every poison
    lies within eps of its base, trigger included. ``target_class``, when given, is checked
    against the base labels (a backdoor into the target's own class is refused). At test time,
    paste the same patch at the same location on the target (``triggers.paste_patch``)."""
    _check_inputs(base_images, patch, location, eps)
    if not isinstance(base_labels, torch.Tensor) or base_labels.shape != (len(base_images),):
        raise ValueError(f"base_labels: need a tensor of shape [{len(base_images)}] (one label per base)")
    if not isinstance(step_size, numbers.Real) or not 0 < step_size <= 1:
        raise ValueError(f"step_size={step_size}: need a step in (0, 1] on the [0, 1] pixel scale "
                         f"(did you mean 2/255?)")
    if target_class is not None and bool((base_labels == target_class).any()):
        raise ValueError(f"target_class={target_class}: equal to the class of some bases; the base class "
                         f"must differ from the target's")
    adversarial = adversarial_bases(model, base_images, base_labels, eps=eps, steps=steps, step_size=step_size,
                                    random_start=random_start, batch_size=batch_size, seed=seed)
    return add_trigger_within_budget(adversarial, base_images, patch, location, eps=eps, clip_trigger=clip_trigger)
