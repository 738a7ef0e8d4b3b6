"""The plot helpers draw what they are given: images on either pixel scale (issue 24, §1: ABL-1a
showed five black squares because ``to_image`` clamped uint8 images to [0, 1])."""
import matplotlib

matplotlib.use("Agg")  # noqa: E402  (drawn off screen, the pixels read back)
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from poisonrepro import plots as P


def _mid_grey_images():
    """Two copies of one light image, as the project stores it (uint8, 0-255) and as a float in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(150, 230, (3, 8, 8), dtype=torch.uint8, generator=g)
    return u8, u8.float() / 255


def _drawn_brightness(images) -> list[float]:
    """Each image drawn by ``image_row`` on an Agg canvas: the mean brightness (0 black, 1 white)
    of the canvas's pixels inside each image's axes."""
    fig, axes = plt.subplots(1, len(images), figsize=(2 * len(images), 2), dpi=50)
    try:
        fig.patch.set_facecolor("black")  # a blank axes must not pass for a bright image
        P.image_row(axes, images, [f"image {i}" for i in range(len(images))])
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
        height = rgba.shape[0]
        out = []
        for ax in axes:
            x0, y0, x1, y1 = ax.get_window_extent().extents  # display pixels, origin bottom left
            # a pixel in from each edge: the crop holds only the image
            crop = rgba[int(height - y1) + 1:int(height - y0) - 1, int(x0) + 1:int(x1) - 1, :3]
            assert crop.size, "the image's axes drew no pixels"
            out.append(float(crop.mean()) / 255)
        return out
    finally:
        plt.close(fig)


def test_uint8_and_float_images_are_drawn_alike_and_not_black():
    u8, f = _mid_grey_images()
    expected = float(f.mean())  # about 0.75
    bright_u8, bright_f = _drawn_brightness([u8, f])
    assert bright_u8 > 0.5 and bright_f > 0.5, (bright_u8, bright_f)
    assert bright_u8 == pytest.approx(expected, abs=0.05)
    assert bright_u8 == pytest.approx(bright_f, abs=0.01)


def test_to_image_scales_uint8_and_keeps_floats():
    u8, f = _mid_grey_images()
    a, b = P.to_image(u8), P.to_image(f)
    assert a.shape == (8, 8, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(P.to_image(torch.full((3, 2, 2), 2.0)), 1.0)  # floats clamped to [0, 1]


def test_to_image_refuses_other_integer_images():
    with pytest.raises(ValueError, match="uint8 .0-255. or float"):
        P.to_image(torch.zeros(3, 4, 4, dtype=torch.int64))
