"""`cnnkit serve` over real HTTP: TorchServe's inference API, answers equal to `cnnkit predict --json`, dynamic
batching, the page's API, and the limits (auth, Host, sizes, content) — each against a server process on a free
loopback port."""
import io
import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from serving import Server, raw_status, request

pytestmark = pytest.mark.xdist_group("serve")  # one trained run and one server per worker, not per file


def digit_png(i: int) -> bytes:
    from sklearn.datasets import load_digits

    img = (load_digits().images[i] * (255 / 16)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def multipart(field: str, data: bytes, filename: str = "x.png") -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def predict_cli(run, path, *extra) -> dict:
    out = subprocess.run([sys.executable, "-m", "cnnkit", "predict", str(run), str(path), "--json", *extra],
                         capture_output=True, text=True, check=True)
    return {t["class"]: t["probability"] for t in json.loads(out.stdout)["predictions"][0]["top"]}


def post(server, path, data, **headers):
    status, body, hdrs = request(server.url + path, data=data, headers=headers, method="POST")
    return status, json.loads(body) if body else None, hdrs


def test_torchserve_endpoints(digits_server):
    s = digits_server
    assert json.loads(s.get("/ping")[1]) == {"status": "Healthy"}
    assert json.loads(s.get("/models")[1]) == {"models": [{"modelName": "digits", "modelUrl": "digits"}]}
    d = json.loads(s.get("/models/digits")[1])[0]
    assert d["modelName"] == "digits" and d["input"] == [1, 16, 16] and d["classes"] == [str(i) for i in range(10)]
    status, body, _ = s.get("/models/nope")
    assert status == 404 and json.loads(body)["type"] == "ModelNotFound" and "digits" in json.loads(body)["message"]


def test_prediction_equals_cnnkit_predict(digits_server, serve_run, tmp_path):
    """Raw body (POST and PUT, as `curl -T` sends), multipart field 'data': the answer is predict --json's."""
    s = digits_server
    for i in (0, 3, 7):
        png = digit_png(i)
        (tmp_path / f"{i}.png").write_bytes(png)
        expected = predict_cli(serve_run, tmp_path / f"{i}.png")
        status, got, _ = post(s, "/predictions/digits", png)
        assert status == 200 and list(got) == list(expected)  # the same classes, in the same order
        assert got == pytest.approx(expected, abs=2e-6)
        put = request(s.url + "/predictions/digits", data=png, method="PUT")
        assert put[0] == 200 and json.loads(put[1]) == got
        body, ctype = multipart("data", png)
        status, form, _ = post(s, "/predictions/digits", body, **{"Content-Type": ctype})
        assert status == 200 and form == got
    status, got, _ = post(s, "/predictions/digits?top_k=5", digit_png(1))
    assert status == 200 and len(got) == 5 and list(got.values()) == sorted(got.values(), reverse=True)


def test_dicom_upload_equals_predict_on_the_file(digits_server, serve_run):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    status, got, _ = post(digits_server, "/predictions/digits", open(path, "rb").read())
    assert status == 200 and got == pytest.approx(predict_cli(serve_run, path), abs=2e-6)


def test_concurrent_requests_are_batched_and_answered_right(digits_server):
    s = digits_server
    pngs = [digit_png(i) for i in range(24)]
    alone = [post(s, "/predictions/digits", p)[1] for p in pngs]
    with ThreadPoolExecutor(24) as pool:
        together = list(pool.map(lambda p: post(s, "/predictions/digits", p), pngs * 2))
    for k, (status, got, _) in enumerate(together):
        assert status == 200 and list(got) == list(alone[k % 24])
        assert got == pytest.approx(alone[k % 24], abs=1e-5)  # a batch's float sums may differ in the 7th digit
    sizes = json.loads(s.get("/models/digits")[1])[0]["recentBatchSizes"]
    assert max(sizes) > 1, sizes  # 48 requests at once did not all run alone


def test_explanations_and_the_page_api(digits_server):
    s = digits_server
    png = digit_png(3)
    _, pred, _ = post(s, "/predictions/digits", png)
    status, e, _ = post(s, "/explanations/digits", png)
    assert status == 200 and e["class"] == next(iter(pred)) and e["probability"] == pytest.approx(pred[e["class"]])
    cam = np.array(e["cam"])
    assert cam.shape == (16, 16) and 0 <= cam.min() and cam.max() <= 1 and e["declined"] is False
    # the layer is the one measured on the run's validation images (explainer.layer_choices), and says why
    from cnnkit import load_model
    from cnnkit.explain.explainer import layer_choices

    tm = load_model(digits_server_run(s))
    want = layer_choices(tm, torch.zeros(1, 1, 16, 16))["hirescam"]
    assert e["method"] == "hirescam" and e["layer"] == want.layer and e["layer_reason"] == want.reason
    assert "validation images" in e["layer_reason"]
    assert e["overlay"].startswith("data:image/png;base64,")
    status, e7, _ = post(s, "/explanations/digits?target=7", png)
    assert status == 200 and e7["target"] == 7 and e7["class"] == "7"

    net = json.loads(s.get("/api/models/digits/network")[1])
    assert [(st["name"], st["channels"], st["height"]) for st in net["stages"]] == [("pool1", 32, 8), ("pool2", 64, 4)]
    from cnnkit import load_model
    from cnnkit.explain.receptive_field import receptive_field

    rf = receptive_field(load_model(digits_server_run(s)).model, (1, 16, 16), "pool2")
    assert net["stages"][1]["rf"] == {"size": list(rf.size), "stride": list(map(float, rf.jump)),
                                      "start": list(map(float, rf.left))}
    assert len(net["first_conv"]["filters"]) == 32 and net["first_conv"]["size"] == [3, 3]
    assert net["first_conv"]["random"] is False

    status, ins, _ = post(s, "/api/models/digits/inspect?channels=4", png)
    assert status == 200 and ins["top"][0]["class"] == e["class"]
    assert [len(st["maps"]) for st in ins["stages"]] == [4, 4]
    m = ins["stages"][0]["maps"][0]
    assert np.array(m["values"]).shape == (8, 8) and np.array(m["kernel"]["weights"]).shape == (3, 3)
    means = [np.mean(mm["values"]) for mm in ins["stages"][0]["maps"]]
    assert means == sorted(means, reverse=True)  # the most active channels first

    status, conv, _ = post(s, "/api/convolve", json.dumps({"input": np.arange(1, 26).reshape(5, 5).tolist(),
                                                          "kernel": [[1, 0, -1], [2, 0, -2], [1, 0, -1]]}).encode())
    assert status == 200 and conv["output"][0][0] == -8 and np.array(conv["output"]).shape == (3, 3)
    status, conv, _ = post(s, "/api/convolve", json.dumps({"sample": "camera", "size": 24, "kernel": "sobel_x",
                                                          "stride": 2, "padding": 1}).encode())
    assert status == 200 and np.array(conv["output"]).shape == (12, 12)
    for bad in ({"input": [[1, 2], [3]]}, {"input": [[1]] * 100}, {"input": [[1]], "stride": 0},
                {"kernel": "nope", "input": [[1, 2, 3]] * 3}, {"sample": "../etc/passwd"}, {"path": "/etc"}):
        status, err, _ = post(s, "/api/convolve", json.dumps(bad).encode())
        assert status == 400 and err["code"] == 400 and err["message"], (bad, err)
    samples = json.loads(s.get("/api/samples")[1])["samples"]
    assert "camera" in samples
    status, body, hdrs = s.get("/api/samples/camera")
    assert status == 200 and hdrs["content-type"] == "image/png" and Image.open(io.BytesIO(body)).size == (512, 512)
    assert s.get("/api/samples/..%2F..%2Fetc%2Fpasswd")[0] == 404


def digits_server_run(s):
    return s.proc.args[s.proc.args.index("serve") + 1].partition("=")[2]


def test_bad_uploads_are_4xx_and_the_server_lives(digits_server):
    s = digits_server
    png = digit_png(0)
    cases = {
        b"": 400,
        b"hello, I am not an image" * 10: 415,
        png[:60]: 400,                                  # a truncated PNG
        b"\xff\xd8\xff\xe0" + bytes(200): 415,           # a JPEG's first bytes and zeros: no format PIL knows
        b"\0" * 128 + b"DICM" + bytes(300): 400,        # a DICOM preamble and nothing
    }
    for body, code in cases.items():
        status, err, _ = post(s, "/predictions/digits", body)
        assert status == code and set(err) == {"code", "type", "message"}, (body[:20], status, err)
    big = io.BytesIO()
    Image.new("L", (8000, 6000)).save(big, "PNG")        # 48 MP of zeros in a 50 kB file: over the 40 MP limit
    status, err, _ = post(s, "/predictions/digits", big.getvalue())
    assert status == 413 and "pixels" in err["message"]
    status, err, _ = post(s, "/predictions/nope", png)
    assert status == 404 and err["type"] == "ModelNotFound"
    body, ctype = multipart("data", png)
    status, err, _ = post(s, "/predictions/digits", body[:-30], **{"Content-Type": ctype})  # cut mid-form
    assert 400 <= status < 500
    assert s.alive()


def test_fuzzed_uploads_never_5xx(digits_server):
    """Random bytes, PNG/JPEG cut anywhere or with bytes flipped, under any Content-Type: always 2xx/4xx."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    s = digits_server
    jpg = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)).save(jpg, "JPEG")
    seeds = [digit_png(5), jpg.getvalue()]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from([0, 1]), st.integers(0, 2000), st.binary(max_size=64), st.integers(0, 3),
           st.sampled_from(["application/octet-stream", "image/png", "text/plain", "multipart/form-data",
                            "multipart/form-data; boundary=x", "application/json"]))
    def check(which, cut, noise, mode, ctype):
        base = seeds[which]
        body = {0: base[:cut], 1: base[:cut] + noise + base[cut:], 2: noise, 3: base}[mode]
        status, _, _ = request(s.url + "/predictions/digits", data=body, headers={"Content-Type": ctype},
                               method="POST")
        assert status < 500, (mode, cut, ctype, status)

    check()
    assert s.alive()


def test_limits_auth_host_and_no_disk(serve_run, tmp_path):
    spool = tmp_path / "tmp"
    spool.mkdir()
    s = Server(f"digits={serve_run}", "--token", "s3cret-token", "--max-bytes", "3000000",
               "--max-pixels", "20000", env={"TMPDIR": str(spool)})
    try:
        png = digit_png(2)
        assert request(s.url + "/predictions/digits", data=png, method="POST")[0] == 401
        ok = {"Authorization": "Bearer s3cret-token"}
        assert request(s.url + "/predictions/digits", data=png, headers=ok, method="POST")[0] == 200
        assert request(s.url + "/predictions/digits?token=s3cret-token", data=png, method="POST")[0] == 200
        assert request(s.url + "/predictions/digits", data=png, method="POST",
                       headers={"Authorization": "Bearer wrong-token"})[0] == 401
        assert s.get("/")[0] == 200 and s.get("/ping")[0] == 401  # the page's files are public, the API is not
        assert s.get("/ping", Host="attacker.example")[0] == 421  # DNS rebinding: a foreign Host is refused
        auth = "Authorization: Bearer s3cret-token\n"
        head = f"POST /predictions/digits HTTP/1.1\nHost: 127.0.0.1\n{auth}"
        # refused from its Content-Length, before any byte of it is read
        assert raw_status(s.url, head + "Content-Length: 3500000\n") == 413
        # no length given (chunked): refused once 3 MB have been read, without waiting for the rest
        chunk = bytes(1_000_000)
        chunked = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
        assert raw_status(s.url, head + "Transfer-Encoding: chunked\n", chunked) == 413
        large = io.BytesIO()
        Image.new("L", (200, 200)).save(large, "PNG")   # 40,000 pixels: over --max-pixels 20000
        assert request(s.url + "/predictions/digits", data=large.getvalue(), headers=ok, method="POST")[0] == 413
        form, ctype = multipart("data", png + bytes(2_000_000))  # over Starlette's 1 MB in-memory spool size
        status, _, _ = request(s.url + "/predictions/digits", data=form, headers={**ok, "Content-Type": ctype},
                               method="POST")
        assert status == 200
        status, _, hdrs = request(s.url + "/ping", headers={**ok, "Origin": "http://evil.example"})
        assert status == 200 and "access-control-allow-origin" not in {k.lower() for k in hdrs}  # no CORS
        assert list(spool.iterdir()) == []  # nothing uploaded was written to disk
    finally:
        s.stop()


def test_other_hosts_need_a_token(serve_run):
    s = Server(f"digits={serve_run}", "--host", "0.0.0.0")
    try:
        assert s.token and len(s.token) >= 24  # random, printed once
        url = s.url.replace("0.0.0.0", "127.0.0.1")
        assert request(url + "/models")[0] == 401
        assert request(url + "/models", headers={"Authorization": f"Bearer {s.token}"})[0] == 200
    finally:
        s.stop()


def test_docs_offline_and_openapi(digits_server):
    status, html, _ = digits_server.get("/docs")
    assert status == 200 and b"/static-offline-docs/swagger-ui-bundle.js" in html and b"cdn" not in html.lower()
    assert digits_server.get("/static-offline-docs/swagger-ui-bundle.js")[0] == 200
    spec = json.loads(digits_server.get("/openapi.json")[1])
    assert {"/predictions/{model}", "/explanations/{model}", "/ping", "/models"} <= set(spec["paths"])


@pytest.mark.parametrize("args, says", [
    (["/no/such/run"], "not a run directory"),
    (["a=RUN", "a=RUN"], "two models named 'a'"),
    (["bad name=RUN"], "model name"),
    (["RUN", "--token", "short"], "at least 8"),
    (["RUN", "--port", "70000"], "--port"),
    (["RUN", "--max-bytes", "0"], "above 0"),
])
def test_serve_bad_arguments_are_one_line(serve_run, args, says):
    args = [a.replace("RUN", str(serve_run)) for a in args]
    out = subprocess.run([sys.executable, "-m", "cnnkit", "serve", *args, "--port", "0"] if "--port" not in args
                         else [sys.executable, "-m", "cnnkit", "serve", *args], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_port_in_use_is_one_line(digits_server, serve_run):
    port = digits_server.url.rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, "-m", "cnnkit", "serve", str(serve_run), "--port", port],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "in use" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_the_layer_is_chosen_once_per_model_and_a_declined_method_answers_why(digits_run, monkeypatch):
    """network.explanation / inspect (the server's answers) take the layer from explainer.layer_choices, once per
    loaded model and method (it measures for seconds), and a declined method gives its reason and no map."""
    from cnnkit import load_model
    from cnnkit.explain import explainer, network
    from cnnkit.explain.attribution import LayerChoice

    calls = []

    def fake(sub, x, method="auto", data=None, compare=False):
        calls.append(method)
        if method == "gradcam":
            return {"gradcam": LayerChoice("gradcam", None, "spatial", "Grad-CAM is declined for this model: measured")}
        return {"hirescam": LayerChoice("hirescam", "pool1", "spatial", "HiResCAM at pool1: chosen on 64 images", 64)}

    monkeypatch.setattr(explainer, "layer_choices", fake)
    tm = load_model(digits_run)
    import cnnkit

    img = cnnkit.load_data("digits", img_size=16).val.x[3].numpy()  # uint8 1×16×16, as the server hands it over
    a = network.explanation(tm, img)
    b = network.explanation(tm, img, 7)
    ins = network.inspect(tm, img, channels=2)
    assert calls == ["auto"]  # once for the model: the second answer and inspect reuse it
    assert a["layer"] == b["layer"] == ins["gradcam"]["layer"] == "pool1" and a["method"] == "hirescam"
    assert a["layer_reason"] == ins["gradcam"]["layer_reason"] == "HiResCAM at pool1: chosen on 64 images"
    assert np.array(a["cam"]).shape == (16, 16)
    d = network.explanation(tm, img, method="gradcam")
    assert d["declined"] is True and d["reason"] == "Grad-CAM is declined for this model: measured"
    assert d["layer"] is None and "cam" not in d and "overlay" not in d and d["class"] == a["class"]
    network.explanation(tm, img, method="gradcam")
    assert calls == ["auto", "gradcam"]
    assert load_model(digits_run).model not in network._CHOICES  # another loaded model: measured afresh
