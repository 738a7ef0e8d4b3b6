"""Trigger patches for backdoor attacks: make one, and paste (or blend) it into images.

Shared by the clean-label backdoor (Turner, Tsipras & Madry, "Label-Consistent Backdoor
Attacks", arXiv:1912.02771, 2019), the hidden-trigger backdoor (Saha, Subramanya & Pirsiavash,
"Hidden Trigger Backdoor Attacks", AAAI 2020) and the backdoors of later notebooks (BadNets'
patch, the blended trigger with ``alpha < 1``).

Conventions, as in the benchmark of Schwarzschild et al., "Just How Toxic is Data Poisoning? A
Unified Benchmark for Backdoor and Data Poisoning Attacks", ICML 2021 (repository
aks2203/poisoning-benchmark): a patch is a [C, h, w] image and its location (x, y) is the
column and row of its top-left pixel, so that the patch covers ``image[:, y:y+h, x:x+w]``
(``poison_test.py`` pastes ``target[:, starty:starty+p, startx:startx+p] = patch``). The
benchmark's patches are 3x5x5 (``--patch_size 5``, README/how_to.md: "a 3x5x5 tensor
containing the patch"); its locations on 32x32 CIFAR-10 images:

- clean-label backdoor (``poison_crafting/craft_poisons_clbd.py``): x = y = image_size -
  patch_size = 27, the bottom-right 5x5 corner (pixels 27..31);
- hidden-trigger backdoor (``poison_crafting/craft_poisons_htbd.py``): x = y = image_size -
  patch_size - 5 = 22, five pixels in from the bottom-right corner (pixels 22..26), as Saha
  et al.'s ``generate_poison.py`` places it (224 - patch_size - 5 on ImageNet).

The benchmark's patches are the PNG files ``poison_crafting/triggers/clbd.png`` and
``htbd.png`` resized to 5x5; they are not shipped here. ``make_patch`` draws a deterministic
random pattern in their place (Saha et al. use random colour patterns as triggers) or Turner et
al.'s black-and-white checkerboard.
"""
from __future__ import annotations

import numbers

import torch

from .train import check_pixels

CIFAR_IMAGE_SIZE = 32
BENCHMARK_PATCH_SIZE = 5
# (x, y) of the patch's top-left pixel on a 32x32 image, for a 5x5 patch
CLBD_LOCATION = (CIFAR_IMAGE_SIZE - BENCHMARK_PATCH_SIZE,) * 2          # (27, 27): craft_poisons_clbd.py
HTBD_LOCATION = (CIFAR_IMAGE_SIZE - BENCHMARK_PATCH_SIZE - 5,) * 2      # (22, 22): craft_poisons_htbd.py
PATCH_KINDS = ("random", "checkerboard")


def benchmark_location(attack: str, image_size: int = CIFAR_IMAGE_SIZE,
                       patch_size: int = BENCHMARK_PATCH_SIZE) -> tuple[int, int]:
    """The benchmark's (x, y) for ``attack`` "clbd" (the bottom-right corner) or "htbd" (five
    pixels in from it), for any image and patch size (64x64 Tiny ImageNet, say)."""
    offsets = {"clbd": 0, "htbd": 5}
    if attack not in offsets:
        raise ValueError(f"attack={attack!r}: unknown; allowed: 'clbd', 'htbd'")
    start = image_size - patch_size - offsets[attack]
    if start < 0:
        raise ValueError(f"patch_size={patch_size}: too large for {attack}'s location on a "
                         f"{image_size}x{image_size} image")
    return start, start


def make_patch(size: int | tuple[int, int] = BENCHMARK_PATCH_SIZE, *, seed: int = 0, kind: str = "random",
               channels: int = 3, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """A deterministic trigger patch [channels, h, w].

    - ``kind="random"``: every pixel of every channel uniform on {0, ..., 255}, drawn from
      ``torch.Generator().manual_seed(seed)`` (a random colour pattern, as Saha et al.'s
      triggers; it stands in for the benchmark's ``clbd.png`` and ``htbd.png``);
    - ``kind="checkerboard"``: black and white alternating, white at the top-left (Turner et
      al.'s corner pattern); ``seed`` is unused.

    uint8 by default; a floating ``dtype`` gives the same values divided by 255 (exact on the
    255-level grid, so pasting into uint8 or float images gives the same picture).
    """
    h, w = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    for name, value in (("size", h), ("size", w), ("channels", channels)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}: need a positive integer")
    if kind not in PATCH_KINDS:
        raise ValueError(f"kind={kind!r}: unknown; allowed: {', '.join(map(repr, PATCH_KINDS))}")
    if dtype != torch.uint8 and not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype}: need torch.uint8 or a floating dtype")
    if kind == "random":
        generator = torch.Generator().manual_seed(seed)
        patch = torch.randint(0, 256, (channels, h, w), generator=generator, dtype=torch.uint8)
    else:
        parity = (torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2
        patch = ((1 - parity) * 255).to(torch.uint8).expand(channels, h, w).clone()
    return patch if dtype == torch.uint8 else patch.to(dtype) / 255


def as_location(location) -> tuple[int, int]:
    """``location`` as the pair (x, y), or a ValueError naming what was given."""
    try:
        x, y = location
    except (TypeError, ValueError):
        raise ValueError(f"location={location!r}: need a pair (x, y), the column and row of the "
                         f"patch's top-left pixel") from None
    return x, y


def _check_fits(image_shape, patch_shape, x, y):
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}={value!r}: need an integer pixel coordinate >= 0")
    channels, height, width = image_shape
    pc, ph, pw = patch_shape
    if pc not in (1, channels):
        raise ValueError(f"patch has {pc} channels, the images {channels}: need {channels} (or 1, broadcast)")
    if x + pw > width or y + ph > height:
        raise ValueError(f"patch of {ph}x{pw} at (x={x}, y={y}) does not fit in a {height}x{width} image: "
                         f"need x + {pw} <= {width} and y + {ph} <= {height}")


def patch_mask(image_shape, patch_shape, x: int, y: int) -> torch.Tensor:
    """Boolean [H, W] mask of the pixels a patch of ``patch_shape`` ([C, h, w]) covers at (x, y)
    in images of ``image_shape`` ([C, H, W])."""
    _check_fits(tuple(image_shape), tuple(patch_shape), x, y)
    mask = torch.zeros(image_shape[-2:], dtype=torch.bool)
    mask[y:y + patch_shape[-2], x:x + patch_shape[-1]] = True
    return mask


def paste_patch(images: torch.Tensor, patch: torch.Tensor, x: int, y: int, *, alpha: float = 1.0) -> torch.Tensor:
    """A copy of ``images`` with ``patch`` at (x, y): the covered pixels become
    ``(1 - alpha) * image + alpha * patch`` (``alpha=1``: replaced, as BadNets and the benchmark;
    ``alpha < 1``: blended), every other pixel unchanged.

    ``images``: [N, C, H, W] or one [C, H, W], uint8 or floats in [0, 1]; ``patch``: [C, h, w]
    (or [1, h, w], broadcast over channels), uint8 or floats in [0, 1], converted to the images'
    scale (a float patch pasted into uint8 images is rounded to the nearest level). A patch
    that does not fit at (x, y) is refused with a ValueError.
    """
    if not isinstance(images, torch.Tensor) or images.dim() not in (3, 4) or images.numel() == 0:
        raise ValueError("images: need a non-empty tensor [N, C, H, W] or [C, H, W]")
    if not isinstance(patch, torch.Tensor) or patch.dim() != 3 or patch.numel() == 0:
        raise ValueError(f"patch: need a non-empty tensor [C, h, w], got shape "
                         f"{tuple(getattr(patch, 'shape', ()))}")
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha={alpha}: need a blend weight in (0, 1]")
    for name, tensor in (("images", images), ("patch", patch)):
        check_pixels(name, tensor)
    _check_fits(tuple(images.shape[-3:]), tuple(patch.shape), x, y)
    h, w = patch.shape[-2:]
    out = images.clone()
    region = out[..., y:y + h, x:x + w]
    if images.dtype == torch.uint8:
        patch_255 = patch.float() if patch.dtype == torch.uint8 else patch.float() * 255
        if alpha == 1:
            region[...] = patch_255.round().to(torch.uint8)
        else:
            region[...] = ((1 - alpha) * region.float() + alpha * patch_255).round().to(torch.uint8)
    else:
        patch_unit = (patch.to(images.dtype) / 255 if patch.dtype == torch.uint8 else patch.to(images.dtype))
        region[...] = patch_unit if alpha == 1 else (1 - alpha) * region + alpha * patch_unit
    return out
