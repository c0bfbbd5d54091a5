"""The page in a real browser: Playwright driving Debian's chromium, with and without JavaScript.

The browser must be present: a missing browser fails these tests rather than skipping them.
"""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

import tests.app_images as pics
from app import create_app

CHROMIUM = "/usr/bin/chromium"
OFFLINE_ARGS = ["--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-default-apps", "--disable-sync"]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def base_url(served_checkpoint):
    app = create_app({"CHECKPOINT": served_checkpoint})
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
    made = {"seven.jpg": pics.jpeg((300, 220)), "anim.gif": pics.gif()}
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
    context.close()
