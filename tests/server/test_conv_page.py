"""The convolution page (/conv) in a real browser: the lessons' worked example, its products, padding, stride,
a typed kernel, a photo as a heatmap, all checked against cnnkit.ops.conv2d."""
import tempfile

import numpy as np
import pytest
from browser import launch, watch

from cnnkit.ops import conv2d

pytestmark = pytest.mark.xdist_group("serve")

IMAGE = np.arange(1, 26, dtype=float).reshape(5, 5)            # the worked example: 1..25, row by row
LESSON = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)  # its kernel: top-left output -8
TYPED = [["2", "-1", "0"], ["0.5", "3", "1"], ["-2", "0", "1/4"]]  # a kernel typed in, a fraction included
TYPED_K = np.array([[2, -1, 0], [0.5, 3, 1], [-2, 0, 0.25]])




def conv(x, k, stride=1, padding=0) -> np.ndarray:
    return conv2d(np.asarray(x, float)[None, None], np.asarray(k, float)[None, None],
                  stride=stride, padding=padding)[0, 0]


def wait_output(page, want: np.ndarray) -> None:
    """Until the page shows exactly these output numbers (after its debounce and the server's answer)."""
    page.wait_for_function("""want => {
        const cells = [...document.querySelectorAll('#output-view .cell.out')];
        return document.body.dataset.state === 'ready' && cells.length === want.flat().length &&
            cells.every(c => Math.abs(Number(c.dataset.value) - want[c.dataset.i][c.dataset.j]) < 1e-6);
    }""", arg=want.tolist(), timeout=5000)


def products(page) -> list[tuple[float, float, float]]:
    return page.eval_on_selector_all(
        "#prod-grid .prod", "ds => ds.map(d => [Number(d.dataset.x), Number(d.dataset.w), Number(d.dataset.p)])")


def test_conv_page_in_headless_chromium(serve_digits, chromium, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is in the test extra: pip install -e '.[test]'")
    problems = []
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = launch(p, chromium, profile, 1280, 900)
        try:
            page = ctx.new_page()
            watch(page, problems)
            page.goto(serve_digits.rstrip("/") + "/conv", wait_until="load")

            # the worked example, as the page opens: -8 at the top left, all nine values conv2d's
            wait_output(page, conv(IMAGE, LESSON))
            top_left = page.locator('#output-view .cell.out[data-i="0"][data-j="0"]')
            assert top_left.inner_text() == "−8" and conv(IMAGE, LESSON)[0, 0] == -8
            assert page.inner_text("#output-shape") == "3 × 3"
            assert "(5 + 2·0 − 3) / 1 + 1 = 3" in page.inner_text("#formula")
            assert page.locator('a[href="/"]').count() == 1  # the way back to the main page

            # click it: the nine products of its window and the kernel, summing to -8, checked against the server
            top_left.click()
            prods = products(page)
            assert [x for x, _, _ in prods] == IMAGE[:3, :3].ravel().tolist()
            assert [w for _, w, _ in prods] == LESSON.ravel().tolist()
            assert all(x * w == q for x, w, q in prods) and sum(q for _, _, q in prods) == -8
            assert page.inner_text("#prod-sum").endswith("= −8")
            assert page.inner_text("#prod-check").startswith("✓")
            assert page.locator("#input-view .cell.win").count() == 9
            page.screenshot(path=str(tmp_path / "conv_worked.png"), full_page=True)
            # step the window: the arrow key, then the button (the last window wraps round to the first)
            page.keyboard.press("ArrowRight")
            assert [x for x, _, _ in products(page)] == IMAGE[:3, 1:4].ravel().tolist()
            assert page.inner_text("#prod-at") == "[0][1]" and page.inner_text("#prod-check").startswith("✓")
            for _ in range(8):
                page.click("#next")
            assert page.inner_text("#prod-at") == "[0][0]"

            # padding 1: a 5×5 output, the zero border shown, the top-left window partly padding
            page.fill("#padding", "1")
            want = conv(IMAGE, LESSON, padding=1)
            wait_output(page, want)
            assert page.inner_text("#output-shape") == "5 × 5"
            assert float(top_left.get_attribute("data-value")) == want[0, 0] == -11
            assert page.locator("#input-view .cell.pad").count() == 7 * 7 - 25
            top_left.click()
            assert page.locator("#prod-grid .prod.pad").count() == 5
            assert page.inner_text("#prod-check").startswith("✓")

            # a kernel typed in; a typo is one line, not a crash, and fixing it goes on
            cells = page.locator("#kernel-grid input")
            cells.nth(0).fill("abc")
            page.wait_for_selector("#error:not([hidden])")
            err = page.inner_text("#error")
            assert "kernel row 1, column 1" in err and "not a number" in err and "\n" not in err
            for i, text in enumerate(v for row in TYPED for v in row):
                cells.nth(i).fill(text)
            wait_output(page, conv(IMAGE, TYPED_K, padding=1))
            assert page.is_hidden("#error") and page.input_value("#kernel-name") == "custom"
            page.locator('#output-view .cell.out[data-i="2"][data-j="3"]').click()
            assert page.inner_text("#prod-check").startswith("✓")

            # the image typed in, key by key (the grid keeps its focus while the page updates)
            corner = page.locator('#input-view input[data-r="0"][data-c="0"]')
            corner.fill("")
            page.wait_for_selector("#error:not([hidden])")
            corner.press_sequentially("-30", delay=200)
            image = IMAGE.copy()
            image[0, 0] = -30
            wait_output(page, conv(image, TYPED_K, padding=1))
            assert page.input_value("#source") == "custom" and page.is_visible("#rows")
            assert page.is_hidden("#error") and corner.input_value() == "-30"

            # stride 2, then 3 (rounded down): the shapes of (H + 2p - k) / s + 1
            page.fill("#stride", "2")
            wait_output(page, conv(image, TYPED_K, stride=2, padding=1))
            assert page.inner_text("#output-shape") == "3 × 3"
            assert "(5 + 2·1 − 3) / 2 + 1 = 3" in page.inner_text("#formula")
            page.fill("#stride", "3")
            wait_output(page, conv(image, TYPED_K, stride=3, padding=1))
            assert page.inner_text("#output-shape") == "2 × 2" and "⌊1.333⌋ + 1 = 2" in page.inner_text("#formula")
            page.locator('#output-view .cell.out[data-i="1"][data-j="1"]').click()
            assert [x for x, _, _ in products(page)] == np.pad(image, 1)[3:6, 3:6].ravel().tolist()
            assert page.inner_text("#prod-check").startswith("✓")
            page.screenshot(path=str(tmp_path / "conv.png"), full_page=True)

            # a photo, downsized by the server: drawn as heatmaps, and a clicked window still adds up
            page.fill("#stride", "1")
            page.select_option("#kernel-name", "sobel_x")
            page.select_option("#source", "sample:camera")
            page.fill("#size", "20")
            page.wait_for_function("""() => document.body.dataset.state === 'ready' && S.result &&
                S.result.output.length === 20 && document.querySelector('#output-view canvas')""", timeout=5000)
            result = page.evaluate("S.result")
            x = np.array(result["input"])
            assert x.shape == (20, 20) and x.std() > 0
            assert np.allclose(result["output"], conv(x, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], padding=1), atol=1e-6)
            box = page.locator("#output-view canvas").bounding_box()
            cell = (box["width"] - 2) / 20                                     # inside its 1 px border
            page.mouse.click(box["x"] + 1 + 11.5 * cell, box["y"] + 1 + 7.5 * cell)
            assert page.inner_text("#prod-at") == "[7][11]" and page.inner_text("#prod-check").startswith("✓")
            page.screenshot(path=str(tmp_path / "conv_photo.png"), full_page=True)
        finally:
            ctx.close()
    assert problems == []
