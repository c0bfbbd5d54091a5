"""The page in a real browser: Playwright driving Debian's chromium, with and without JavaScript.

The browser must be present: a missing browser fails these tests rather than skipping them.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from flask import request
from PIL import Image
from werkzeug.serving import make_server

import tests.app_images as pics
from app import create_app

CHROMIUM = "/usr/bin/chromium"
OFFLINE_ARGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-default-apps", "--disable-sync"]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def received_boxes() -> list:
    """The ``box`` field of every POST /api/predict the server received (None when absent)."""
    return []


@pytest.fixture(scope="module")
def base_url(served_checkpoint, received_boxes):
    app = create_app({"CHECKPOINT": served_checkpoint})

    @app.before_request
    def record_box():
        if request.method == "POST" and request.path == "/api/predict":
            received_boxes.append(request.form.get("box"))

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    app.extensions["classifier"].close()


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install Debian's chromium package"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    made = {"seven.jpg": pics.jpeg((300, 220)), "anim.gif": pics.gif(), "big.jpg": pics.jpeg((1600, 1200)),
            "rotated.jpg": pics.exif_rotated_jpeg((300, 220), orientation=6),
            "blank.jpg": pics.encode(Image.new("RGB", (300, 220), "white"), "JPEG")}
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in made}


def assert_result_shown(page) -> None:
    """The digit, ten bars and the 32x32 preprocessed picture are on screen."""
    page.wait_for_selector("#result:not([hidden])", timeout=TIMEOUT_MS)
    assert page.inner_text("#digit").strip() in [str(d) for d in range(10)]
    assert page.locator("#bars .bar-row").count() == 10
    widths = page.eval_on_selector_all("#bars .bar-fill", "els => els.map(e => parseFloat(e.style.width))")
    assert abs(sum(widths) - 100) < 1.0 and page.locator("#bars .bar-row.top").count() == 1
    seen = page.locator("#seen")
    seen.wait_for(state="visible")
    assert seen.get_attribute("src").startswith("data:image/png;base64,")
    page.wait_for_function("document.getElementById('seen').complete")
    assert page.eval_on_selector("#seen", "img => [img.naturalWidth, img.naturalHeight]") == [32, 32]


def test_upload_a_jpeg_and_see_the_result(browser, base_url, files):
    page = browser.new_page()
    page.goto(base_url + "/")
    assert page.locator("#placeholder").is_visible()
    page.set_input_files("#image", str(files["seven.jpg"]))
    assert_result_shown(page)
    assert page.locator("#preview").is_visible()
    assert page.locator("#placeholder").is_hidden()
    api_digit = page.evaluate("""async () => { const f = new FormData();
        f.append('image', await (await fetch(document.getElementById('preview').src)).blob(), 'x.jpg');
        return (await (await fetch('/api/predict', {method: 'POST', body: f})).json()).digit; }""")
    assert page.inner_text("#digit").strip() == str(api_digit)
    page.close()


def test_drop_a_picture_on_the_page(browser, base_url, files):
    page = browser.new_page()
    page.goto(base_url + "/")
    data = list(files["seven.jpg"].read_bytes())
    page.evaluate("""bytes => { const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], 'seven.jpg', {type: 'image/jpeg'}));
        document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})); }""", data)
    assert_result_shown(page)
    page.close()


def test_unsupported_file_shows_an_error(browser, base_url, files):
    page = browser.new_page()
    page.goto(base_url + "/")
    page.set_input_files("#image", str(files["anim.gif"]))
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert "GIF pictures are not supported" in error.inner_text()
    assert page.locator("#result").is_hidden()
    page.close()


def test_keyboard_reaches_the_file_chooser_and_button(browser, base_url):
    page = browser.new_page()
    page.goto(base_url + "/")
    focused = []
    for _ in range(3):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert "image" in focused and "submit" in focused
    page.close()


def test_form_works_without_javascript(browser, base_url, files):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base_url + "/")
    assert page.locator("#result").is_hidden()
    page.set_input_files("#image", str(files["seven.jpg"]))
    with page.expect_navigation():
        page.click("#submit")
    assert_result_shown(page)
    assert "may not show a single clear digit" in page.inner_text("#result")   # random weights
    assert page.locator("#stage").is_hidden() and page.locator("#box-input").is_visible() is False
    context.close()


def test_form_without_javascript_reads_a_given_box(browser, base_url, files):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base_url + "/")
    page.set_input_files("#image", str(files["seven.jpg"]))
    page.click("summary")
    page.fill("#box-input", "60, 50, 180, 150")
    with page.expect_navigation():
        page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=TIMEOUT_MS)
    assert page.inner_text("#where-box") == "60,50,180,150" and page.inner_text("#where-source") == "your box"
    assert page.input_value("#box-input") == "60, 50, 180, 150"   # kept, to be corrected and sent again
    context.close()


# ---- where it looked, and a box drawn by the person ----------------------------------------------

def is_predict(response) -> bool:
    return response.request.method == "POST" and response.url.endswith("/api/predict")


def overlay(page) -> dict:
    """The box drawn over the picture: picture pixels, kind, and where it is on screen."""
    return page.eval_on_selector("#box", """b => ({hidden: b.hidden, box: (b.dataset.box || '').split(',').map(Number),
        source: b.dataset.source, tag: b.querySelector('.box-tag').textContent})""")


def screen_box(page, box, image_size) -> list[float]:
    """``box`` in picture pixels -> [left, top, right, bottom] in the page's pixels."""
    area = page.locator("#draw").bounding_box()
    sx, sy = area["width"] / image_size[0], area["height"] / image_size[1]
    return [area["x"] + box[0] * sx, area["y"] + box[1] * sy, area["x"] + box[2] * sx, area["y"] + box[3] * sy]


def assert_overlay_on(page, box, image_size) -> None:
    rect = page.locator("#box").bounding_box()
    expected = screen_box(page, box, image_size)
    got = [rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"]]
    assert all(abs(a - b) <= 1.5 for a, b in zip(got, expected)), (got, expected)


def api_answer(page, box: str | None) -> dict:
    """What /api/predict says about the page's picture, in ``box``."""
    return page.evaluate("""async box => { const f = new FormData();
        f.append('image', await (await fetch(document.getElementById('preview').src)).blob(), 'x.jpg');
        if (box) f.append('box', box);
        return (await fetch('/api/predict', {method: 'POST', body: f})).json(); }""", box)


def upload(page, base_url, path) -> dict:
    """Open the page, choose ``path`` and return the API's answer the page received."""
    page.goto(base_url + "/")
    with page.expect_response(is_predict) as answer:
        page.set_input_files("#image", str(path))
    page.wait_for_selector("#result:not([hidden])", timeout=TIMEOUT_MS)
    page.locator("#frame").scroll_into_view_if_needed()   # phones scroll down to the result
    return answer.value.json()


def assert_result_for_box(page, sent: str) -> None:
    """The page shows the answer for the box ``sent``, marked as the person's."""
    page.wait_for_function("box => document.getElementById('where-box').textContent === box", arg=sent, timeout=TIMEOUT_MS)
    assert page.inner_text("#where-source") == "your box"
    shown = overlay(page)
    assert not shown["hidden"] and shown["source"] == "user" and shown["box"] == [int(v) for v in sent.split(",")]
    expected = api_answer(page, sent)
    assert expected["source"] == "user" and expected["box"] == shown["box"]
    digit = page.inner_text("#digit").strip()
    assert digit == (str(expected["digit"]) if expected["digit"] is not None else "–")
    assert shown["tag"].startswith("Your box")


def test_the_box_it_found_is_drawn_over_the_picture(browser, base_url, files):
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    body = upload(page, base_url, files["seven.jpg"])
    assert body["image_size"] == [300, 220]
    shown = overlay(page)
    if body["box"] is None:
        assert shown["hidden"]
    else:
        assert not shown["hidden"] and shown["box"] == body["box"] and shown["source"] == body["source"]
        assert_overlay_on(page, body["box"], body["image_size"])
        assert page.inner_text("#where-box") == ",".join(map(str, body["box"]))
    page.close()


def drag(page, pointer: str, start, end) -> None:
    """Press at ``start``, move to ``end`` and let go, with the mouse or one finger (page pixels)."""
    middle = [(a + b) / 2 for a, b in zip(start, end)]
    if pointer == "mouse":
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*middle, steps=4)
        page.mouse.move(*end, steps=4)
        page.mouse.up()
        return
    cdp = page.context.new_cdp_session(page)
    for kind, (x, y) in (("touchStart", start), ("touchMove", middle), ("touchMove", end)):
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


@pytest.mark.parametrize("pointer, name", [("mouse", "seven.jpg"), ("touch", "seven.jpg"), ("mouse", "big.jpg"),
                                           ("touch", "big.jpg"), ("mouse", "rotated.jpg")])
def test_drag_a_box_to_read_the_digit_there(browser, base_url, files, received_boxes, pointer, name):
    """Pictures shown at their size, scaled down (big.jpg: 1600 x 1200) and turned by EXIF."""
    phone = pointer == "touch"
    context = browser.new_context(viewport={"width": 390, "height": 844} if phone else {"width": 1000, "height": 800},
                                  has_touch=phone, is_mobile=phone, device_scale_factor=2 if phone else 1)
    page = context.new_page()
    body = upload(page, base_url, files[name])
    width, height = body["image_size"]
    area = page.locator("#draw").bounding_box()
    assert area["width"] / area["height"] == pytest.approx(width / height, rel=0.02)   # shown upright, unsquashed
    region = [0.2 * width, 0.3 * height, 0.6 * width, 0.8 * height]       # picture pixels
    left, top, right, bottom = screen_box(page, region, body["image_size"])
    tolerance = 1 + width / area["width"]                                  # a page pixel, in picture pixels
    with page.expect_response(is_predict, timeout=TIMEOUT_MS):
        drag(page, pointer, (left, top), (right, bottom))
    sent = received_boxes[-1]
    assert sent is not None, "the page did not send a box"
    assert all(abs(int(v) - r) <= tolerance for v, r in zip(sent.split(","), region)), (sent, region)
    assert_result_for_box(page, sent)
    assert_overlay_on(page, [int(v) for v in sent.split(",")], body["image_size"])
    context.close()


def test_keyboard_moves_resizes_and_reads_the_box(browser, base_url, files, received_boxes):
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    body = upload(page, base_url, files["seven.jpg"])
    width, height = body["image_size"]
    start = [60, 50, 180, 150]                              # inside the 300 x 220 picture, away from its edges
    with page.expect_response(is_predict, timeout=TIMEOUT_MS):
        drag(page, "mouse", *[screen_box(page, start, body["image_size"])[i:i + 2] for i in (0, 2)])
    assert_result_for_box(page, received_boxes[-1])
    first = overlay(page)["box"]
    step = max(1, round(min(width, height) / 50))
    assert "arrows move the box" in page.inner_text("#draw-hint")
    assert "arrow keys" in page.get_attribute("#draw", "aria-label")
    page.focus("#draw")
    for key in ("ArrowRight", "ArrowRight", "ArrowUp", "Shift+ArrowRight", "Shift+ArrowDown", "Shift+ArrowDown"):
        page.keyboard.press(key)
    moved = [first[0] + 2 * step, first[1] - step, first[2] + 3 * step, first[3] + step]
    assert overlay(page)["box"] == moved and overlay(page)["source"] == "edit"
    page.keyboard.press("Escape")
    assert overlay(page)["box"] == first
    page.keyboard.press("ArrowLeft")
    with page.expect_response(is_predict, timeout=TIMEOUT_MS):
        page.keyboard.press("Enter")
    sent = received_boxes[-1]
    assert sent == ",".join(str(v) for v in [first[0] - step, first[1], first[2] - step, first[3]])
    assert_result_for_box(page, sent)
    page.close()


def test_after_no_digit_the_next_picture_shows_its_probabilities_again(browser, base_url, files):
    page = browser.new_page()
    assert upload(page, base_url, files["blank.jpg"])["input_image"] is None
    assert page.locator("#no-digit").is_visible()
    assert page.locator("#probabilities").is_hidden() and page.locator("#seen-figure").is_hidden()
    with page.expect_response(is_predict):
        page.set_input_files("#image", str(files["seven.jpg"]))
    page.wait_for_selector("#no-digit", state="hidden", timeout=TIMEOUT_MS)
    assert_result_shown(page)                   # digit, ten bars and the 32x32 view, visible again
    assert page.locator("#probabilities").is_visible()
    page.close()


def fake_answer(page, **fields) -> None:
    """Make /api/predict answer ``fields`` over a plausible prediction (the page's rendering only)."""
    answer = {"digit": 3, "confidence": 0.93, "probabilities": [0.0] * 3 + [0.93] + [0.01] * 6 + [0.01],
              "model": "tiny.pt", "elapsed_ms": 12.5, "input_image": pics.PNG_DATA_URL, "box": [30, 20, 120, 200],
              "image_size": [300, 220], "others": 0, "reason": None, "source": "localiser"}
    answer["probabilities"] = answer["probabilities"][:10]
    answer.update(fields)
    page.route("**/api/predict", lambda route: route.fulfill(status=200, content_type="application/json",
                                                            body=json.dumps(answer)))


@pytest.mark.parametrize("case, fields, shown, hidden", [
    ("no digit", {"digit": None, "confidence": 0, "probabilities": [], "box": None, "input_image": None,
                  "reason": "nothing here looks like a digit"},
     ["No digit found: nothing here looks like a digit", "closer photo", "drag a box"],
     ["#low-confidence", "#confidence-line", "#box", "#probabilities", "#seen-figure"]),
    ("faint", {"digit": None, "confidence": 0, "probabilities": [], "reason": "it is faint"},   # the candidate's box
     ["No digit found: it is faint", "What the network saw", "Looked at 30,20,120,200"], ["#confidence-line", "#probabilities"]),
    ("low confidence", {"confidence": 0.31}, ["may not show a single clear digit", "drag a box around the digit"], ["#no-digit"]),
    ("other digits", {"others": 2}, ["2 other digits seen; drag a box to read another"], ["#no-digit", "#low-confidence"]),
    ("one other digit", {"others": 1}, ["1 other digit seen"], ["#no-digit"]),
    ("no localiser", {"source": "picture"}, ["the centre of the picture"], ["#no-digit"]),
])
def test_the_page_says_what_the_reading_found(browser, base_url, files, case, fields, shown, hidden):
    page = browser.new_page()
    fake_answer(page, **fields)
    upload(page, base_url, files["seven.jpg"])
    text = page.inner_text("#result")
    for words in shown:
        assert words in text, (case, words)
    for selector in hidden:
        assert page.locator(selector).is_hidden(), (case, selector)
    if fields.get("source") == "picture":
        assert page.inner_text("#box-tag") == "Read here" and "found automatically" not in text
    if case == "faint":
        assert page.locator("#box").is_visible() and page.inner_text("#box-tag") == "Faint: not read as a digit"
    if fields.get("digit", 3) is None:
        assert page.inner_text("#digit").strip() == "–" and page.title().startswith("No digit")
        assert page.locator("#bars .bar-row.top").count() == 0
    page.close()
