"""The Flask app through its test client: every route, every upload error, the no-JS page."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from markupsafe import escape
from PIL import Image

import tests.app_images as pics
from app import create_app
from app.boxes import BOX_RULE, MAX_BOX_TEXT
from app.classifier import Prediction
from app.imaging import MAX_PIXELS, MAX_UPLOAD_BYTES, UploadError, decode_upload
from model.inference import ModelLoadError
from model.reading import NOTHING_FOUND
from model.preprocess import Photo

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app(served_checkpoint):
    app = create_app({"TESTING": True, "CHECKPOINT": served_checkpoint})
    yield app
    app.extensions["classifier"].close()


@pytest.fixture()
def client(app):
    return app.test_client()


def post_image(client, data: bytes, url: str = "/api/predict", filename: str = "upload.bin", box: str | None = None):
    form = {"image": (io.BytesIO(data), filename)}
    if box is not None:
        form["box"] = box
    return client.post(url, data=form, content_type="multipart/form-data")


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
    assert set(body) >= {"digit", "confidence", "probabilities", "model", "elapsed_ms", "input_image", "box",
                         "image_size", "others", "reason", "source"}
    assert body["model"] == "tiny.pt" and body["elapsed_ms"] > 0
    if body["digit"] is None:     # the localiser found no digit: it says why, and reads nothing
        assert body["reason"] and body["probabilities"] == [] and body["confidence"] == 0
        assert (body["input_image"] is None) == (body["reason"] == NOTHING_FOUND)   # a faint candidate: read,
        assert (body["box"] is None) == (body["reason"] == NOTHING_FOUND)           # and where
        return
    assert len(body["probabilities"]) == 10 and sum(body["probabilities"]) == pytest.approx(1, abs=1e-9)
    assert body["digit"] == max(range(10), key=body["probabilities"].__getitem__)
    assert body["confidence"] == pytest.approx(body["probabilities"][body["digit"]], abs=1e-6)
    assert body["input_image"].startswith("data:image/png;base64,")


def assert_box_inside(box, image_size):
    assert box is not None
    width, height = image_size
    left, top, right, bottom = box
    assert all(isinstance(v, int) for v in box)
    assert 0 <= left < right <= width and 0 <= top < bottom <= height


@pytest.mark.parametrize("size", [(120, 90), (40, 400), (300, 220)])
def test_predict_says_where_it_looked(client, size):
    body = post_image(client, pics.jpeg(size)).json
    assert body["image_size"] == list(size) and body["source"] == "localiser" and body["others"] >= 0
    if body["digit"] is None:              # a reading pipeline may find no digit: it must say why
        assert body["reason"]
    else:
        assert body["digit"] in range(10) and body["reason"] is None
    if body["box"] is not None or body["digit"] is not None:
        assert_box_inside(body["box"], body["image_size"])


def test_box_and_size_are_in_the_upright_picture(client):
    body = post_image(client, pics.exif_rotated_jpeg(size=(120, 90), orientation=6)).json
    assert body["image_size"] == [90, 120]     # stored 120 wide, shown 90 wide
    if body["box"] is not None:
        assert_box_inside(body["box"], body["image_size"])
    body = post_image(client, pics.exif_rotated_jpeg(size=(120, 90), orientation=6), box="0,95,90,120").json
    assert body["box"] == [0, 95, 90, 120]     # beyond the stored height, inside the upright picture


@pytest.mark.parametrize("box", ["10,10,50,60", " 30 , 5 ,\t70, 85 ", "0,0,120,90", "0,0,4,4", "116,0,120,90", "+1,2,10,30"])
def test_predict_reads_the_box_it_is_given(client, box):
    body = post_image(client, pics.jpeg((120, 90)), box=box).json
    assert body["box"] == [int(v) for v in box.split(",")]
    assert body["source"] == "user" and body["image_size"] == [120, 90]
    assert len(body["probabilities"]) == 10 and body["input_image"].startswith("data:image/png;base64,")


def test_a_given_box_changes_what_the_network_sees(client):
    seen = {box: post_image(client, pics.jpeg((120, 90)), box=box).json["input_image"]
            for box in ("0,0,40,40", "80,50,120,90")}
    assert len(set(seen.values())) == 2


@pytest.mark.parametrize("box", ["", "   "])
def test_an_empty_box_field_counts_as_none(client, box):
    body = post_image(client, pics.jpeg(), box=box).json
    assert body["source"] == "localiser"


BAD_BOXES = {
    "three numbers": ("1,2,3", "not four whole numbers"),
    "five numbers": ("1,2,3,4,5", "not four whole numbers"),
    "letters": ("a,b,c,d", "not four whole numbers"),
    "decimals": ("1.5,2,3,4", "not four whole numbers"),
    "spaces instead of commas": ("1 2 30 40", "not four whole numbers"),
    "a huge number": ("0,0,99999999999999999999,10", "not four whole numbers"),
    "very long": ("1," * 500 + "1", "not four whole numbers"),
    "inverted": ("10,10,5,20", "inverted or empty"),
    "upside down": ("10,20,30,5", "inverted or empty"),
    "empty": ("0,0,0,0", "inverted or empty"),
    "too small": ("10,10,13,40", "only 3 x 30 pixels"),
    "left of the picture": ("-5,0,10,10", "outside the 120 x 90 picture"),
    "above the picture": ("0,-1,10,10", "outside the 120 x 90 picture"),
    "past the right edge": ("100,0,121,90", "outside the 120 x 90 picture"),
    "past the bottom edge": ("0,80,20,91", "outside the 120 x 90 picture"),
    "wholly outside": ("500,500,600,600", "outside the 120 x 90 picture"),
}


@pytest.mark.parametrize("url", ["/api/predict", "/"])
@pytest.mark.parametrize("name", BAD_BOXES)
def test_bad_boxes_are_a_400_saying_what_a_box_must_be(client, name, url):
    box, problem = BAD_BOXES[name]
    response = post_image(client, pics.jpeg((120, 90)), url=url, box=box)
    assert response.status_code == 400
    text = response.json["error"] if url.startswith("/api/") else response.get_data(as_text=True)
    assert problem in text and "A box must be four whole numbers left,top,right,bottom" in text
    if url.startswith("/api/"):
        assert text.endswith(BOX_RULE)
    else:   # the form shows the box again, to be corrected
        assert "<details class=\"box-field no-js-only\" open>" in text and f'value="{escape(box[:MAX_BOX_TEXT])}"' in text


def no_digit(data: bytes, box=None) -> Prediction:
    """What the reading pipeline answers for a picture without a digit (the fake's answer)."""
    return Prediction(digit=None, confidence=0.0, probabilities=[], model="tiny.pt", elapsed_ms=3.0,
                      input_image=None, box=None, image_size=[120, 90], others=0,
                      reason="nothing in the picture looks like a digit", source="localiser")


def test_no_digit_is_null_with_a_reason(app, client, monkeypatch):
    monkeypatch.setattr(app.extensions["classifier"], "classify", no_digit)
    body = post_image(client, pics.jpeg()).json
    assert body["digit"] is None and body["reason"] == "nothing in the picture looks like a digit"
    assert body["box"] is None and body["image_size"] == [120, 90]


def test_a_blank_picture_is_no_digit_and_nothing_was_read(client):
    body = post_image(client, pics.encode(Image.new("RGB", (160, 120), "white"), "JPEG")).json
    assert body["digit"] is None and body["reason"] == NOTHING_FOUND and body["box"] is None
    assert body["input_image"] is None and body["probabilities"] == []     # the classifier never ran


def is_hidden(html: str, element_id: str) -> bool:
    """Whether the element with ``element_id`` carries the ``hidden`` attribute in ``html``."""
    return " hidden" in html.split(f'id="{element_id}"')[1].split(">")[0]


def test_no_digit_page_says_so_without_javascript(app, client, monkeypatch):
    monkeypatch.setattr(app.extensions["classifier"], "classify", no_digit)
    html = post_image(client, pics.jpeg(), url="/").get_data(as_text=True)
    result = html.split('id="result"')[1]
    assert "No digit found" in result and "nothing in the picture looks like a digit" in result
    assert "closer photo" in result and "box" in result
    assert not is_hidden(html, "no-digit") and is_hidden(html, "low-confidence") and is_hidden(html, "confidence-line")
    assert is_hidden(html, "probabilities") and is_hidden(html, "seen-figure")   # none computed, nothing read
    assert "<title>No digit" in html


def test_page_mentions_the_other_digits_and_the_box_without_javascript(app, client, monkeypatch):
    def three_digits(data, box=None):
        return Prediction(digit=4, confidence=0.9, probabilities=[0.0] * 4 + [0.9] + [0.1 / 5] * 5, model="tiny.pt",
                          elapsed_ms=3.0, input_image=pics.PNG_DATA_URL, box=[10, 20, 50, 80],
                          image_size=[120, 90], others=2, reason=None, source="localiser")

    monkeypatch.setattr(app.extensions["classifier"], "classify", three_digits)
    html = post_image(client, pics.jpeg(), url="/").get_data(as_text=True)
    assert "2 other digits seen" in html and not is_hidden(html, "others") and is_hidden(html, "no-digit")
    assert "10,20,50,80" in html and "found automatically" in html


def test_form_post_reads_the_box_it_is_given(client):
    html = post_image(client, pics.jpeg((120, 90)), url="/", box="10,10,50,60").get_data(as_text=True)
    result = html.split('id="result"')[1]
    assert "10,10,50,60" in result and "your box" in result and not is_hidden(html, "where")


BAD_UPLOADS = [
    ("empty file", b"", 400, "empty"),
    ("garbage", bytes(range(256)) * 40, 400, "not a picture"),
    ("text", b"hello, this is not a picture", 400, "not a picture"),
    ("truncated jpeg", pics.truncated_jpeg(), 400, "truncated"),
    ("gif", pics.gif(), 415, "GIF pictures are not supported"),
    ("bmp", pics.bmp(), 415, "BMP"),
    ("tiff", pics.tiff(), 415, "TIFF"),
    ("over 10 MB, under the request limit", pics.jpeg() + b"\0" * MAX_UPLOAD_BYTES, 413, "the limit is 10 MB"),
    ("far over 10 MB", pics.noise_png(1900), 413, "the limit is 10 MB"),
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
    upload = decode_upload(pics.exif_rotated_jpeg(size=(120, 90), orientation=6))
    assert upload.size == upload.picture.size == (90, 120) and upload.picture.mode == "RGB"


@pytest.mark.parametrize("data", [pics.png(mode="L"), pics.png_16bit(), pics.jpeg(mode="CMYK"), pics.png(mode="RGBA")])
def test_every_mode_decodes_to_rgb(data):
    assert decode_upload(data).picture.mode == "RGB"


@pytest.mark.parametrize("data, size, decoded", [
    (pics.jpeg((3000, 2000)), (3000, 2000), (1500, 1000)),                    # 1/2 keeps 1,280 px or more
    (pics.jpeg((6000, 4000), mode="L"), (6000, 4000), (1500, 1000)),          # 1/4
    (pics.exif_rotated_jpeg((3000, 2000), orientation=6), (2000, 3000), (1000, 1500)),   # turned upright
    (pics.mpo((3000, 2000)), (3000, 2000), (1500, 1000)),                     # a phone's JPEG with two frames
    (pics.jpeg((2400, 1800)), (2400, 1800), (2400, 1800)),                    # 1/2 would leave under 1,280
    (pics.png((3000, 2000)), (3000, 2000), (3000, 2000)),                     # only JPEG decodes reduced
])
def test_a_large_jpeg_is_decoded_at_a_reduced_scale(data, size, decoded):
    upload = decode_upload(data)
    assert upload.size == size and upload.picture.size == decoded and upload.picture.mode == "RGB"


def test_an_uploads_boxes_map_to_its_decoded_picture_and_back():
    upload = Photo(Image.new("RGB", (1500, 1000)), (3000, 2000))
    assert upload.scale == (2.0, 2.0)
    assert upload.to_picture((100, 50, 301, 2000)) == (50.0, 25.0, 150.5, 1000.0)
    assert upload.to_photo((50.0, 25.0, 150.5, 1000.0)) == (100, 50, 301, 2000)
    assert upload.to_photo((-3.0, 10.2, 1600.0, 999.1)) == (0, 20, 3000, 1999)     # whole pixels, inside


def test_a_large_photo_is_read_with_boxes_in_its_own_pixels(client):
    data = pics.jpeg((3000, 2000))
    found = post_image(client, data).json
    assert found["image_size"] == [3000, 2000]
    if found["box"] is not None:              # random weights: a box, if any, lies in the upload's pixels
        left, top, right, bottom = found["box"]
        assert 0 <= left < right <= 3000 and 0 <= top < bottom <= 2000
    given = post_image(client, data, box="1000,400,1801,1601").json
    assert given["box"] == [1000, 400, 1801, 1601] and given["source"] == "user"
    refused = post_image(client, data, box="1000,400,1801,2001")
    assert refused.status_code == 400 and "3000 x 2000 picture" in refused.json["error"]


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
    assert body["seen_npz"] == []      # the .npz files its weights trained on: none
    localiser = body["localiser"]      # the shipped one: what it is and what it was trained on
    assert localiser["model"] == "localiser.pt" and localiser["architecture"].startswith("LocNet")
    assert "Scenes" in localiser["dataset"] and "val_box_iou50" in localiser["metrics"]


def test_page_offers_upload_form_and_camera(client):
    html = client.get("/").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and 'name="image"' in html
    assert 'capture="environment"' in html and 'accept="image/*"' in html
    assert 'name="box"' in html   # the no-JavaScript way to give a box
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html   # no CDN
    assert 'id="result"' in html and "hidden" in html.split('id="result"')[1].split(">")[0]


def test_form_post_renders_the_result_page(client):
    response = post_image(client, pics.jpeg(), url="/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.count('class="bar-row') == 10 and 'src="data:image/png;base64,' in html
    assert "hidden" not in html.split('id="result"')[1].split(">")[0]
    if is_hidden(html, "no-digit"):   # a digit was read, by random weights: the page says it is unsure
        assert "may not show a single clear digit" in html and not is_hidden(html, "low-confidence")
    else:                             # the localiser found no digit: no confidence to warn about
        assert is_hidden(html, "low-confidence")
    assert is_hidden(html, "others")


@pytest.mark.parametrize("data, status, message", [(pics.gif(), 415, "not supported"),
                                                   (pics.noise_png(1900), 413, "10 MB"), (b"", 400, "empty")])
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


def test_without_a_localiser_the_answer_says_it_read_the_centred_square(served_checkpoint):
    app = create_app({"TESTING": True, "CHECKPOINT": served_checkpoint, "LOCALISER": "none"})
    try:
        client = app.test_client()
        body = post_image(client, pics.jpeg((120, 90))).get_json()
        assert body["source"] == "picture" and body["box"] == [15, 0, 105, 90]     # the centred square
        html = post_image(client, pics.jpeg((120, 90)), url="/").get_data(as_text=True)
        where = html.split('id="where-source">')[1].split("</span>")[0]
        assert where == "the centre of the picture"                                  # not "found automatically"
    finally:
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
