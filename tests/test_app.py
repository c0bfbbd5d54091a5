"""The Flask app through its test client: every route, every upload error, the no-JS page."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import tests.app_images as pics
from app import create_app
from app.imaging import MAX_PIXELS, MAX_UPLOAD_BYTES, UploadError, decode_upload
from model.inference import ModelLoadError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app(served_checkpoint):
    app = create_app({"TESTING": True, "CHECKPOINT": served_checkpoint})
    yield app
    app.extensions["classifier"].close()


@pytest.fixture()
def client(app):
    return app.test_client()


def post_image(client, data: bytes, url: str = "/api/predict", filename: str = "upload.bin"):
    return client.post(url, data={"image": (io.BytesIO(data), filename)}, content_type="multipart/form-data")


GOOD_UPLOADS = {
    "jpeg": pics.jpeg(), "png": pics.png(), "webp": pics.webp(), "grayscale png": pics.png(mode="L"),
    "grayscale+alpha png": pics.png(mode="LA"), "rgba png": pics.png(mode="RGBA"),
    "palette png with transparency": pics.palette_transparent_png(), "cmyk jpeg": pics.jpeg(mode="CMYK"),
    "16-bit png": pics.png_16bit(), "exif-rotated jpeg": pics.exif_rotated_jpeg(),
    "one pixel png": pics.png(size=(1, 1)), "tall jpeg": pics.jpeg(size=(40, 400)),
}


@pytest.mark.parametrize("name", GOOD_UPLOADS)
def test_predict_accepts_every_format_and_mode(client, name):
    response = post_image(client, GOOD_UPLOADS[name], filename="../../etc/passwd")   # the name is ignored
    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) >= {"digit", "confidence", "probabilities", "model", "elapsed_ms"}
    assert len(body["probabilities"]) == 10 and sum(body["probabilities"]) == pytest.approx(1, abs=1e-9)
    assert body["digit"] == max(range(10), key=body["probabilities"].__getitem__)
    assert body["confidence"] == pytest.approx(body["probabilities"][body["digit"]], abs=1e-6)
    assert body["model"] == "tiny.pt" and body["elapsed_ms"] > 0
    assert body["input_image"].startswith("data:image/png;base64,")


BAD_UPLOADS = [
    ("empty file", b"", 400, "empty"),
    ("garbage", bytes(range(256)) * 40, 400, "not a picture"),
    ("text", b"hello, this is not a picture", 400, "not a picture"),
    ("truncated jpeg", pics.truncated_jpeg(), 400, "truncated"),
    ("gif", pics.gif(), 415, "GIF pictures are not supported"),
    ("bmp", pics.bmp(), 415, "BMP"),
    ("tiff", pics.tiff(), 415, "TIFF"),
    ("over 1 MB, under the request limit", pics.jpeg() + b"\0" * MAX_UPLOAD_BYTES, 413, "1 MB"),
    ("far over 1 MB", pics.noise_png(800), 413, "1 MB"),
    ("bomb over Pillow's limit", pics.png_bomb(20_000, 20_000), 413, "megapixels"),
    ("bomb under Pillow's limit", pics.png_bomb(6000, 6000), 413, f"{MAX_PIXELS // 1_000_000} megapixels"),
]


@pytest.mark.parametrize("name, data, status, message", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_predict_refuses_bad_uploads_with_json(client, name, data, status, message):
    response = post_image(client, data)
    assert response.status_code == status
    assert response.is_json and message in response.json["error"]


def test_predict_without_a_file_is_400(client):
    for response in (client.post("/api/predict"), client.post("/api/predict", data={"other": "x"}),
                     client.post("/api/predict", data={"image": (io.BytesIO(b""), "")})):
        assert response.status_code == 400 and "No picture was sent" in response.json["error"]


def test_malformed_multipart_is_a_json_400(client):
    response = client.post("/api/predict", data=b"--xx\r\ngarbage", content_type="multipart/form-data; boundary=xx")
    assert response.status_code == 400 and response.is_json


@pytest.mark.parametrize("method, url, status", [("get", "/api/nothing", 404), ("get", "/api/predict", 405),
                                                 ("put", "/api/predict", 405), ("post", "/api/model", 405)])
def test_api_routing_errors_are_json(client, method, url, status):
    response = getattr(client, method)(url)
    assert response.status_code == status and response.is_json and response.json["error"]


def test_exif_orientation_is_applied():
    image = decode_upload(pics.exif_rotated_jpeg(size=(120, 90), orientation=6))
    assert image.size == (90, 120) and image.mode == "RGB"


@pytest.mark.parametrize("data", [pics.png(mode="L"), pics.png_16bit(), pics.jpeg(mode="CMYK"), pics.png(mode="RGBA")])
def test_every_mode_decodes_to_rgb(data):
    assert decode_upload(data).mode == "RGB"


def test_decoder_refuses_formats_pillow_could_read():
    with pytest.raises(UploadError) as info:
        decode_upload(pics.bmp())
    assert info.value.status == 415


def test_uploads_stay_in_memory(app):
    with app.test_request_context("/api/predict", method="POST", data={"image": (io.BytesIO(pics.noise_png(500)), "a.png")}):
        from flask import request
        assert isinstance(request.files["image"].stream, io.BytesIO)


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok", "model": "tiny.pt"}


def test_model_endpoint_describes_the_model(client):
    body = client.get("/api/model").json
    assert body["architecture"] == "WRN-10-1" and body["parameters"] > 0 and body["model"] == "tiny.pt"
    assert body["dataset"] == "random weights (test fixture)"
    assert body["metrics"]["val_accuracy"] == {"value": 0.1, "data": "none (test fixture)"}
    assert body["input_size"] == [32, 32] and len(body["mean"]) == 3 and body["backend"] == "onnx"


def test_page_offers_upload_form_and_camera(client):
    html = client.get("/").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and 'name="image"' in html
    assert 'capture="environment"' in html and 'accept="image/*"' in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html   # no CDN
    assert 'id="result"' in html and "hidden" in html.split('id="result"')[1].split(">")[0]


def test_form_post_renders_the_result_page(client):
    response = post_image(client, pics.jpeg(), url="/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.count('class="bar-row') == 10 and 'src="data:image/png;base64,' in html
    assert "hidden" not in html.split('id="result"')[1].split(">")[0]
    assert "may not show a single clear digit" in html   # random weights: low confidence


@pytest.mark.parametrize("data, status, message", [(pics.gif(), 415, "not supported"),
                                                   (pics.noise_png(800), 413, "1 MB"), (b"", 400, "empty")])
def test_form_post_shows_errors_on_the_page(client, data, status, message):
    response = post_image(client, data, url="/")
    assert response.status_code == status and response.mimetype == "text/html"
    assert message in response.get_data(as_text=True)


def test_static_assets_are_served(client):
    for path in ("/static/style.css", "/static/app.js", "/static/favicon.svg"):
        assert client.get(path).status_code == 200


def test_config_layers_environment_then_test_config(monkeypatch, served_checkpoint):
    monkeypatch.setenv("DIGITS_BACKEND", "torch")
    monkeypatch.setenv("DIGITS_MAX_BATCH", "4")
    app = create_app({"CHECKPOINT": served_checkpoint, "MAX_BATCH": 2})
    assert app.config["BACKEND"] == "torch" and app.config["MAX_BATCH"] == 2
    assert type(app.extensions["classifier"].predictor).__name__ == "TorchPredictor"
    app.extensions["classifier"].close()


def test_missing_checkpoint_stops_the_factory_naming_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match="absent.pt"):
        create_app({"CHECKPOINT": str(tmp_path / "absent.pt")})


def test_master_process_imports_neither_torch_nor_onnxruntime():
    code = ("import sys, runpy; import app, app.server; "
            "bad = [m for m in ('torch', 'onnxruntime') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


@pytest.mark.parametrize("content", [None, b"corrupt"])
def test_server_start_up_fails_in_one_line_naming_the_file(tmp_path, content):
    ckpt = tmp_path / "model.pt"
    if content is not None:
        ckpt.write_bytes(content)
    done = subprocess.run([sys.executable, "main-flask.py", "--checkpoint", str(ckpt), "--port", "5999"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ckpt) in lines[0] and "python main.py" in lines[0]
