"""Resize + centre crop to a bucket's exact shape."""
import numpy as np
import pytest

from data_pipelines.curation import resize


@pytest.mark.parametrize("source", [(64, 64), (64, 96), (96, 64), (72, 128), (20, 30)])
@pytest.mark.parametrize("target", [(32, 32), (32, 48), (48, 32)])
def test_output_has_the_bucket_shape(source, target):
    frames = np.random.default_rng(0).integers(0, 256, (3, *source, 3), dtype=np.uint8)
    out = resize.resize_and_crop(frames, *target)
    assert out.shape == (3, *target, 3) and out.dtype == np.uint8


def test_the_centre_is_kept_and_the_sides_cropped():
    # 64 x 192 (1:3) into 32 x 32: the middle third survives; the outer thirds are cropped away.
    frame = np.zeros((1, 64, 192, 3), np.uint8)
    frame[:, :, :64] = (255, 0, 0)
    frame[:, :, 64:128] = (0, 255, 0)
    frame[:, :, 128:] = (0, 0, 255)
    out = resize.resize_and_crop(frame, 32, 32)
    assert np.all(out == (0, 255, 0))


def test_a_flat_colour_stays_flat_and_it_is_deterministic():
    frames = np.full((2, 70, 90, 3), (12, 200, 99), np.uint8)
    out = resize.resize_and_crop(frames, 48, 32)
    assert np.all(out == (12, 200, 99))
    noisy = np.random.default_rng(1).integers(0, 256, (2, 70, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize.resize_and_crop(noisy, 32, 48),
                                  resize.resize_and_crop(noisy, 32, 48))


def test_crop_box_is_centred_with_the_target_aspect():
    left, top, right, bottom = resize.crop_box(100, 300, 32, 48)
    assert (right - left) / (bottom - top) == pytest.approx(48 / 32)
    assert left == pytest.approx(300 - right) and top == 0 and bottom == 100
