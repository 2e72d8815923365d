"""The page at / (cnnkit/server/static/): driven by a real headless Chromium against a running `cnnkit serve`.

It must show what the HTTP API answers for the same bytes (the predicted class, the Grad-CAM, a unit's value and
receptive field), send the token on every call, and work offline (nothing fetched from anywhere else)."""
import base64
import contextlib
import io
import json
import tempfile
import urllib.request

import numpy as np
import pytest
from browser import launch
from PIL import Image

pytestmark = pytest.mark.xdist_group("serve")  # the trained run and the server of the other server tests

TOKEN = "page-t0ken"  # the page must forward it; a server started without --token ignores it




def call(base: str, path: str, body: bytes | None = None):
    req = urllib.request.Request(base + path, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=60) as r:
        data = r.read()
        return json.loads(data) if r.headers.get_content_type() == "application/json" else data


def digit_png(index: int) -> bytes:
    """A real scikit-learn digit (8×8, 0..16) as an 8-bit PNG."""
    from sklearn.datasets import load_digits

    img = (load_digits().images[index] * (255 / 16)).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def rf_box(rf: dict, i: int, j: int, h: int, w: int) -> list[float]:
    """The contract's rule: unit (i, j) sees [y0, y0 + size) × [x0, x0 + size), clipped to the image; → y, x, h, w."""
    y0, x0 = rf["start"][0] + i * rf["stride"][0], rf["start"][1] + j * rf["stride"][1]
    y1, x1 = min(h, y0 + rf["size"][0]), min(w, x0 + rf["size"][1])
    y0, x0 = max(0, y0), max(0, x0)
    return [y0, x0, y1 - y0, x1 - x0]


def percent(p: float) -> str:
    """As the page writes a probability: one decimal, and never 0.0% or 100.0% for what is neither."""
    return "<0.1%" if 0 < p < 0.0005 else ">99.9%" if 0.9995 <= p < 1 else f"{100 * p:.1f}%"


CONTENT_BOX = """el => { const r = el.getBoundingClientRect();
  return {x: r.left + el.clientLeft, y: r.top + el.clientTop, w: el.clientWidth, h: el.clientHeight}; }"""


@contextlib.contextmanager
def browser(chromium: str, url: str):
    """A headless Chromium page at `url`; yields (page, problems, requests): console errors and warnings, page
    errors and failed requests in `problems`, every request as (url, its Authorization header) in `requests`."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is in the test extra: pip install -e '.[test]'")
    problems, requests = [], []
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = launch(p, chromium, profile, 1400, 1000)
        try:
            page = ctx.new_page()
            page.set_default_timeout(20_000)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
            page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
            page.goto(url, wait_until="load")
            yield page, problems, requests
        finally:
            ctx.close()


def test_page_in_headless_chromium(serve_digits, chromium, tmp_path):
    base = serve_digits.rstrip("/")
    png = digit_png(0)  # a 0
    (tmp_path / "digit.png").write_bytes(png)
    (tmp_path / "notes.txt").write_text("not an image\n")
    # what the API answers for the same bytes: the page must show exactly this
    want = list(call(base, "/predictions/digits", png).items())
    network = call(base, "/api/models/digits/network")
    inspected = call(base, "/api/models/digits/inspect", png)
    H, W = network["input"]["height"], network["input"]["width"]
    stage = network["stages"][0]
    first_map = inspected["stages"][0]["maps"][0]
    camera = call(base, "/api/samples/camera")
    camera_want = next(iter(call(base, "/predictions/digits", camera)))

    with browser(chromium, f"{base}/?token={TOKEN}") as (page, problems, requests):
        # the model: listed by GET /models, loaded (its filters drawn) once picked
        page.wait_for_selector("#model:not([disabled])")
        page.select_option("#model", "digits")
        page.wait_for_selector("#filters canvas")
        assert page.locator("#filters canvas").count() == len(network["first_conv"]["filters"])
        assert page.get_attribute("#link-conv", "href") == f"/conv?token={TOKEN}"

        # an uploaded digit: the class the page shows is the one POST /predictions answers
        page.set_input_files("#file", str(tmp_path / "digit.png"))
        page.wait_for_selector('#result[data-image*="digit.png"]')
        assert page.inner_text("#predicted") == want[0][0]
        shown = page.inner_text("#predicted-p").removeprefix("p = ")
        if shown[0] in "<>":
            assert shown == percent(want[0][1])
        else:  # one decimal (JavaScript and Python may round a tie differently)
            assert float(shown.removesuffix("%")) == pytest.approx(100 * want[0][1], abs=0.051)
        bars = page.locator("#top li .cls").all_inner_texts()
        assert len(bars) == len(inspected["top"]) and bars[:len(want)] == [c for c, _ in want]
        # the map: drawn when it has evidence; when blank, a plain sentence and the signed map, said to be that
        if inspected["gradcam"]["blank"]:
            assert "no positive evidence" in page.inner_text("#cam-blank").lower()
            assert page.get_attribute("#cam", "src") == inspected["gradcam"]["signed_overlay"]
        else:
            assert page.is_hidden("#cam-blank")
            assert page.eval_on_selector("#cam", "i => i.complete ? i.naturalWidth : 0") > 0
        # CNN Explainer's columns: input, one per stage (name and C×H×W), output
        cols = page.locator("#network .col")
        assert cols.count() == len(inspected["stages"]) + 2
        for k, s in enumerate(inspected["stages"]):
            text = cols.nth(k + 1).inner_text()
            assert s["name"] in text and f"{s['channels']}×{s['height']}×{s['width']}" in text
            assert cols.nth(k + 1).locator("img.map").count() == len(s["maps"])
        assert f"{network['input']['channels']}×{H}×{W}" in cols.nth(0).inner_text()

        # hover units of the first stage's first map: the receptive-field box on the input, the value, the kernel
        m = page.locator(f'#network .col[data-stage="{stage["name"]}"] img.map').first
        h, w = inspected["stages"][0]["height"], inspected["stages"][0]["width"]
        for i, j in ((0, 0), (h // 2, w // 2 - 1)):  # a corner (clipped) and an inner unit
            m.scroll_into_view_if_needed()
            mbox = m.evaluate(CONTENT_BOX)
            page.mouse.move(mbox["x"] + (j + .5) * mbox["w"] / w, mbox["y"] + (i + .5) * mbox["h"] / h)
            page.wait_for_function(f"document.getElementById('unit-text').textContent.includes('unit ({i}, {j})')")
            assert page.is_visible("#rf-box") and m.evaluate(CONTENT_BOX) == mbox  # the page did not move
            want_box = rf_box(stage["rf"], i, j, H, W)
            assert [float(v) for v in page.get_attribute("#rf-box", "data-box").split(",")] \
                == pytest.approx(want_box)
            got = page.locator("#rf-box").evaluate("e => e.getBoundingClientRect().toJSON()")
            inp = page.locator("#input-stack img").evaluate(CONTENT_BOX)
            sy, sx = inp["h"] / H, inp["w"] / W
            assert got["y"] - inp["y"] == pytest.approx(want_box[0] * sy, abs=1.5)
            assert got["x"] - inp["x"] == pytest.approx(want_box[1] * sx, abs=1.5)
            assert got["height"] == pytest.approx(want_box[2] * sy, abs=1.5)
            assert got["width"] == pytest.approx(want_box[3] * sx, abs=1.5)
            unit = page.inner_text("#unit-text")
            assert f"channel {first_map['channel']}, unit ({i}, {j})" in unit
            shown = float(unit.split(" = ")[1].split()[0])  # three significant digits
            assert shown == pytest.approx(first_map["values"][i][j], rel=5e-3, abs=1e-6)
        kernel = first_map["kernel"]
        assert kernel["layer"] in page.inner_text("#unit-kernel")
        assert page.locator("#unit-kernel .kgrid span").count() == \
            len(kernel["weights"]) * len(kernel["weights"][0])
        page.screenshot(path=str(tmp_path / "digit.png.screenshot.png"), full_page=True)

        # the lesson's kernels beside the filters, with their matches stated
        cards = page.locator("#kernels .kcard")
        assert cards.count() == len(network["kernels"])
        for mt in network["matches"]:
            card = page.locator(f'#kernels .kcard[data-kernel="{mt["kernel"]}"]').inner_text()
            assert f"filter #{mt['filter']}, cosine {mt['cosine']:.2f}" in card
            verdict = "random weights" if network["first_conv"]["random"] else \
                "beats chance" if mt["beats_chance"] else "no better than chance"
            assert verdict in card

        # a sample photo: its thumbnail fetched, then the same bytes POSTed
        page.click('#samples button[data-sample="camera"]:not([disabled])')
        page.wait_for_selector('#result[data-image*="camera"]')
        assert page.inner_text("#predicted") == camera_want
        page.screenshot(path=str(tmp_path / "camera.screenshot.png"), full_page=True)
        assert problems == []

        # a file dropped on the drop zone
        page.dispatch_event("#drop", "drop", {"dataTransfer": page.evaluate_handle(
            """b64 => { const d = new DataTransfer(), bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                       d.items.add(new File([bytes], "dropped.png", {type: "image/png"})); return d; }""",
            base64.b64encode(png).decode())})
        page.wait_for_selector('#result[data-image*="dropped.png"]')
        assert page.inner_text("#predicted") == want[0][0]

        # a blank map is said in words, never drawn as a heat map: the signed map is shown as that, or nothing;
        # a decision is shown beside the top class
        signed = "data:image/png;base64," + base64.b64encode(png).decode()

        def blank_with_decision(route):
            answer = route.fetch().json()
            answer["gradcam"]["blank"], answer["decision"] = True, "7"
            answer["gradcam"]["signed_overlay"] = signed
            route.fulfill(json=answer)

        page.route("**/inspect", blank_with_decision)
        page.click('#samples button[data-sample="coins"]:not([disabled])')
        page.wait_for_selector('#result[data-image*="coins"]')
        assert page.get_attribute("#cam", "src") == signed and "signed map" in page.get_attribute("#cam", "alt")
        assert "No positive evidence for this class" in page.inner_text("#cam-blank")
        assert "Shown instead: the signed map" in page.inner_text("#cam-blank")
        assert page.inner_text("#decision-class") == "7"

        def blank_without_signed(route):
            answer = route.fetch().json()
            answer["gradcam"]["blank"] = True
            answer["gradcam"].pop("signed_overlay", None)
            route.fulfill(json=answer)

        page.unroute("**/inspect")
        page.route("**/inspect", blank_without_signed)
        page.click('#samples button[data-sample="camera"]:not([disabled])')
        page.wait_for_selector('#result[data-image*="camera"]')
        assert page.is_hidden("#cam") and page.get_attribute("#cam", "src") is None
        page.unroute("**/inspect")

        # an error from the server (not an image → 415) is one readable line on the page
        page.set_input_files("#file", str(tmp_path / "notes.txt"))
        page.wait_for_selector("#error:not([hidden])")
        error = page.inner_text("#error")
        assert "\n" not in error.strip() and "(415)" in error
        page.screenshot(path=str(tmp_path / "error.screenshot.png"))
    # the browser itself reports the failed request; the page added nothing to it
    assert all("status of 415" in msg for msg in problems), problems
    # offline: nothing fetched from anywhere but this server (and the page's own data:/blob: images)
    assert all(u.startswith((base + "/", "data:", "blob:")) for u, _ in requests), requests
    api_calls = [(u, a) for u, a in requests if u.startswith(base) and "/static/" not in u and u.split("?")[0] != base + "/"]
    assert len(api_calls) >= 6 and all(a == f"Bearer {TOKEN}" for _, a in api_calls), api_calls


def test_page_with_a_token(serve_run, chromium, tmp_path):
    """A server with --token: the page itself loads without it, and works only when its URL carries it."""
    from serving import Server

    token = "page-s3cret-token"
    server = Server(f"digits={serve_run}", "--token", token)
    try:
        with browser(chromium, f"{server.url}/?token={token}") as (page, problems, requests):
            page.wait_for_selector("#filters canvas")  # GET /models and the network, both authorised
            page.click('#samples button[data-sample="coins"]:not([disabled])')
            page.wait_for_selector('#result[data-image*="coins"]')
            assert page.is_hidden("#error") and page.inner_text("#predicted") in [str(d) for d in range(10)]
            assert page.get_attribute("#link-docs", "href") == f"/docs?token={token}"
            assert problems == []
        assert all(a == f"Bearer {token}" for u, a in requests if "/api/" in u or "/models" in u)
        # without the token: the page still comes (static), and says in one line why nothing else does
        with browser(chromium, f"{server.url}/") as (page, problems, _):
            page.wait_for_selector("#error:not([hidden])")
            error = page.inner_text("#error")
            assert "(401)" in error and "\n" not in error.strip()
            page.screenshot(path=str(tmp_path / "no-token.screenshot.png"))
        assert all("status of 401" in msg for msg in problems), problems
    finally:
        server.stop()
