"""The lesson's worked examples, by hand, and the named kernels."""
import numpy as np
import pytest
from scipy.signal import convolve2d, correlate2d

from cnnkit.errors import CnnkitError, UnknownNameError
from cnnkit.ops import conv2d, conv2d_loop, get_kernel, list_kernels, parse_kernel, resolve_kernel

LESSON_KERNEL = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
IMAGE_1_25 = np.arange(1, 26, dtype=np.float64).reshape(5, 5)
#  1  2  3  4  5
#  6  7  8  9 10
# 11 12 13 14 15
# 16 17 18 19 20
# 21 22 23 24 25

# The lesson's "square": a bright 3×3 square on a dark 5×5 background.
SQUARE = np.zeros((5, 5))
SQUARE[1:4, 1:4] = 1.0

# sobel_x over SQUARE with one pixel of zero padding, by hand: in a row through the square, the difference
# right − left of each pixel is [1, 1, 0, −1, −1] (0 outside the square's rows); sobel_x weighs the row
# above, the row itself and the row below by 1, 2, 1, so the rows of the map are 1×, 3×, 4×, 3×, 1× it.
SOBEL_X_SQUARE = np.array([[1, 1, 0, -1, -1],
                           [3, 3, 0, -3, -3],
                           [4, 4, 0, -4, -4],
                           [3, 3, 0, -3, -3],
                           [1, 1, 0, -1, -1]], dtype=np.float64)
SOBEL_Y_SQUARE = SOBEL_X_SQUARE.T  # sobel_y is sobel_x transposed, and the square is symmetric


def as_batch(image):
    return image[None, None]


@pytest.mark.parametrize("op", [conv2d, conv2d_loop])
def test_lesson_1_to_25_with_the_vertical_edge_kernel_gives_minus_8(op):
    # top-left valid window, element-wise times the kernel, summed (cross-correlation: no flip):
    #   1·1 + 2·0 + 3·(−1)  +  6·2 + 7·0 + 8·(−2)  +  11·1 + 12·0 + 13·(−1)
    # = (1 − 3) + (12 − 16) + (11 − 13) = −2 − 4 − 2 = −8
    out = op(as_batch(IMAGE_1_25), as_batch(np.array(LESSON_KERNEL, dtype=float)))[0, 0]
    assert out[0, 0] == -8.0
    # the image rises by 1 per column everywhere, so every valid window gives the same −8
    assert out.shape == (3, 3) and (out == -8.0).all()


def test_the_flipped_mathematical_convolution_gives_plus_8():
    # scipy's convolve2d flips the kernel first (the textbook convolution): the sign of the edge flips
    assert convolve2d(IMAGE_1_25, LESSON_KERNEL, mode="valid")[0, 0] == 8.0
    assert correlate2d(IMAGE_1_25, LESSON_KERNEL, mode="valid")[0, 0] == -8.0  # what conv2d computes


@pytest.mark.parametrize("op", [conv2d, conv2d_loop])
def test_lesson_square_with_sobel_x_and_y_padding_1(op):
    gx = op(as_batch(SQUARE), as_batch(get_kernel("sobel_x")), padding=1)[0, 0]
    gy = op(as_batch(SQUARE), as_batch(get_kernel("sobel_y")), padding=1)[0, 0]
    np.testing.assert_array_equal(gx, SOBEL_X_SQUARE)
    np.testing.assert_array_equal(gy, SOBEL_Y_SQUARE)
    # the left edge (dark → bright, left to right) is positive, the right edge negative, the middle flat
    assert gx[2, 0] == 4 and gx[2, 4] == -4 and gx[2, 2] == 0
    assert gy[0, 2] == 4 and gy[4, 2] == -4  # top edge: brighter below; bottom edge: darker below
    # the same maps, independently, from scipy (zero fill, output the size of the input)
    np.testing.assert_array_equal(gx, correlate2d(SQUARE, get_kernel("sobel_x"), mode="same"))
    np.testing.assert_array_equal(gy, correlate2d(SQUARE, get_kernel("sobel_y"), mode="same"))
    # the edge magnitude: zero in the middle, strongest on the square's corner pixels, where both edges meet
    magnitude = np.hypot(gx, gy)
    assert magnitude[2, 2] == 0 and magnitude[1, 1] == magnitude.max() == pytest.approx(np.hypot(3, 3))


def test_lesson_horizontal_edge_kernel():
    k = get_kernel("horizontal_edge")
    assert k.tolist() == [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]
    out = conv2d(as_batch(SQUARE), as_batch(k), padding=1)[0, 0]
    assert out[0].tolist() == [1, 2, 3, 2, 1]    # top edge of the square: brighter below
    assert out[4].tolist() == [-1, -2, -3, -2, -1]
    assert (out[2] == 0).all()                   # inside rows: the same above and below


def test_named_kernels():
    assert set(list_kernels()) >= {"sobel_x", "sobel_y", "horizontal_edge", "prewitt_x", "prewitt_y",
                                   "laplacian", "sharpen", "box", "gaussian"}
    assert get_kernel("sobel_y").tolist() == get_kernel("sobel_x").T.tolist()
    assert get_kernel("prewitt_y").tolist() == get_kernel("horizontal_edge").tolist()
    assert get_kernel("box").sum() == pytest.approx(1) and get_kernel("gaussian").sum() == pytest.approx(1)
    assert get_kernel("gaussian")[1, 1] == 0.25
    assert get_kernel("laplacian").sum() == 0 and get_kernel("sharpen").sum() == 1
    flat = np.full((1, 1, 6, 6), 0.7)  # edge detectors see nothing on a flat image; blurs keep it
    for name in ("sobel_x", "sobel_y", "prewitt_x", "prewitt_y", "laplacian"):
        assert np.abs(conv2d(flat, as_batch(get_kernel(name)))).max() < 1e-12
    for name in ("box", "gaussian", "sharpen", "identity"):
        np.testing.assert_allclose(conv2d(flat, as_batch(get_kernel(name))), 0.7, rtol=1e-12)


@pytest.mark.parametrize("text,expected", [
    ("[[1,0,-1],[2,0,-2],[1,0,-1]]", LESSON_KERNEL),
    ("[[0.5, -1.5]]", [[0.5, -1.5]]),
    ("1,0,-1; 2,0,-2; 1,0,-1", LESSON_KERNEL),
    ("1 2;3 4", [[1, 2], [3, 4]]),
])
def test_parse_kernel(text, expected):
    assert parse_kernel(text).tolist() == expected
    name, kernel = resolve_kernel(text)
    assert name == text and kernel.tolist() == expected and kernel.dtype == np.float64


@pytest.mark.parametrize("text,why", [
    ("[[1,2],[3]]", "rows have different lengths (2, 1)"),
    ("[[1,'a']]", "finite numbers"),
    ("[1, 2, 3]", "not a list of rows"),
    ("[[1,2]", "not a list of numbers"),
    ("1,x;2,3", "not a list of numbers"),
    ("[[__import__('os')]]", "not a list of numbers"),
    ("[[1e999]]", "finite numbers"),
])
def test_bad_kernel_text_shows_the_expected_form(text, why):
    with pytest.raises(CnnkitError) as e:
        resolve_kernel(text)
    msg = str(e.value)
    assert why in msg and "[[1,0,-1],[2,0,-2],[1,0,-1]]" in msg and "\n" not in msg


def test_unknown_kernel_name_suggests_one():
    with pytest.raises(UnknownNameError) as e:
        resolve_kernel("sobelx")
    assert "Did you mean 'sobel_x'?" in str(e.value) and "[[1,0,-1]" in str(e.value)
