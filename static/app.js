// Digit recognizer page: choose, drop or paste a picture, classify it with /api/predict, fill in the
// result that the server also renders for the no-JavaScript form, and draw where it looked on the
// picture. Dragging a box over the picture (mouse, touch or pen; or the keyboard) reads it there.
// Boxes are [left, top, right, bottom] in pixels of the picture as the server decoded it
// (image_size, after EXIF rotation); on screen they are percentages of the picture, so they follow
// the picture however it is scaled.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  const $ = function (id) { return document.getElementById(id); };
  const form = $("upload-form");
  const inputs = [$("image"), $("camera")];
  const dropzone = $("dropzone");
  const preview = $("preview");
  const submit = $("submit");
  const errorBox = $("error");
  const result = $("result");
  const stage = $("stage");
  const frame = $("frame");
  const boxEl = $("box");
  const boxTag = $("box-tag");
  const draw = $("draw");
  const boxStatus = $("box-status");
  const maxBytes = Number(form.dataset.maxBytes);
  const lowConfidence = Number(form.dataset.lowConfidence);
  const minBox = Number(form.dataset.minBox) || 4;
  const submitLabel = submit.textContent;
  const TAP_PX = 8;          // a press that moves less than this on screen is a tap, not a box
  const TAG_ROOM_PX = 24;    // room the box's tag needs above or below the box
  const TAGS = { localiser: "Found here", user: "Your box", edit: "Your box: Enter reads it", drawing: "",
                 picture: "Read here", faint: "Faint: not read as a digit" };
  const WHERE_FROM = JSON.parse(form.dataset.whereFrom);   // the result's "source" in words (app/routes.py)

  let currentFile = null;
  let previewUrl = null;
  let imageSize = null;      // [width, height] of the current picture, known once it is read
  let shown = null;          // { box, source } of the result on screen
  let edit = null;           // the box being moved with the keyboard
  let drag = null;           // { pointerId, start: [x, y], startClient: [x, y] } while drawing
  let requestId = 0;         // only the latest request's answer is shown

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function setBusy(busy) {
    submit.disabled = busy;
    submit.textContent = busy ? "Recognising…" : submitLabel;
    form.setAttribute("aria-busy", String(busy));
    frame.classList.toggle("busy", busy);
  }

  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    stage.hidden = false;
    dropzone.classList.add("compact");
    $("dropzone-title").textContent = "Choose another picture";
    imageSize = null;
    shown = null;
    edit = null;
    showBox(null);
    draw.tabIndex = -1;
  }

  // ---- the box on the picture -------------------------------------------------------------

  function showBox(box, kind, tag) {
    boxEl.hidden = !box || !imageSize;
    if (boxEl.hidden) return;
    const [w, h] = imageSize;
    const [left, top, right, bottom] = box;
    boxEl.style.left = (left / w * 100) + "%";
    boxEl.style.top = (top / h * 100) + "%";
    boxEl.style.width = ((right - left) / w * 100) + "%";
    boxEl.style.height = ((bottom - top) / h * 100) + "%";
    boxEl.className = "box " + kind;
    boxEl.dataset.box = box.join(",");
    boxEl.dataset.source = kind;
    boxTag.textContent = tag || TAGS[kind];
    const height = draw.getBoundingClientRect().height;
    const above = top / h * height, below = height - bottom / h * height;
    boxTag.className = "box-tag " + (above >= TAG_ROOM_PX ? "above" : below >= TAG_ROOM_PX ? "below" : "inside");
  }

  function restoreBox() {
    edit = null;
    showBox(shown && shown.box, shown && shown.source, shown && shown.tag);
  }

  function clamp(value, low, high) { return Math.min(Math.max(value, low), high); }

  function pictureXY(event) {
    const rect = draw.getBoundingClientRect();   // the picture's pixels, without the frame's border
    return [clamp((event.clientX - rect.left) / rect.width, 0, 1) * imageSize[0],
            clamp((event.clientY - rect.top) / rect.height, 0, 1) * imageSize[1]];
  }

  function boxBetween(a, b) {
    return [Math.round(Math.min(a[0], b[0])), Math.round(Math.min(a[1], b[1])),
            Math.round(Math.max(a[0], b[0])), Math.round(Math.max(a[1], b[1]))];
  }

  function middleBox() {   // where the keyboard starts when the result has no box
    const [w, h] = imageSize;
    return [Math.round(w / 4), Math.round(h / 4), Math.round(w * 3 / 4), Math.round(h * 3 / 4)];
  }

  function tooSmall(box) { return box[2] - box[0] < minBox || box[3] - box[1] < minBox; }

  function describe(box) {
    return "left " + box[0] + ", top " + box[1] + ", right " + box[2] + ", bottom " + box[3] +
      " of " + imageSize[0] + " by " + imageSize[1] + " pixels";
  }

  draw.addEventListener("pointerdown", function (event) {
    if (!imageSize || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    draw.setPointerCapture(event.pointerId);
    drag = { pointerId: event.pointerId, start: pictureXY(event), startClient: [event.clientX, event.clientY] };
  });
  draw.addEventListener("pointermove", function (event) {
    if (!drag || event.pointerId !== drag.pointerId) return;
    showBox(boxBetween(drag.start, pictureXY(event)), "drawing");
  });
  draw.addEventListener("pointerup", function (event) {
    if (!drag || event.pointerId !== drag.pointerId) return;
    const moved = Math.max(Math.abs(event.clientX - drag.startClient[0]), Math.abs(event.clientY - drag.startClient[1]));
    const box = boxBetween(drag.start, pictureXY(event));
    drag = null;
    if (moved < TAP_PX) { restoreBox(); return; }
    if (tooSmall(box)) {
      restoreBox();
      showError("That box is too small to hold a digit: drag one at least " + minBox + " × " + minBox + " pixels of the picture.");
      return;
    }
    readBox(box);
  });
  draw.addEventListener("pointercancel", function () { drag = null; restoreBox(); });

  // Keyboard: arrows move the box, Shift+arrows move its right or bottom edge, Enter reads it,
  // Escape puts back the box of the result on screen.
  const MOVES = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  draw.addEventListener("keydown", function (event) {
    if (!imageSize || !shown) return;
    const [w, h] = imageSize;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      readBox(edit || shown.box || middleBox());
    } else if (event.key === "Escape") {
      if (edit) { event.preventDefault(); restoreBox(); boxStatus.textContent = "Box put back."; }
    } else if (MOVES[event.key]) {
      event.preventDefault();
      const [dx, dy] = MOVES[event.key];
      const step = Math.max(1, Math.round(Math.min(w, h) / 50));
      let [left, top, right, bottom] = edit || shown.box || middleBox();
      if (event.shiftKey) {
        right = clamp(right + dx * step, left + minBox, w);
        bottom = clamp(bottom + dy * step, top + minBox, h);
      } else {
        const mx = clamp(dx * step, -left, w - right), my = clamp(dy * step, -top, h - bottom);
        left += mx; right += mx; top += my; bottom += my;
      }
      edit = [left, top, right, bottom];
      showBox(edit, "edit");
      boxStatus.textContent = "Box " + describe(edit) + ". Enter reads it.";
    }
  });

  function readBox(box) {
    edit = null;
    showBox(box, "user");
    classify(currentFile, box);
  }

  // ---- the result ---------------------------------------------------------------------------

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function render(data) {
    const found = data.digit !== null && data.digit !== undefined;
    $("digit").textContent = found ? data.digit : "–";
    $("digit-box").classList.toggle("none", !found);
    $("confidence-line").hidden = !found;
    $("confidence").textContent = (data.confidence * 100).toFixed(1) + "%";
    $("no-digit").hidden = found;
    $("reason").textContent = !found && data.reason ? ": " + data.reason.replace(/\.$/, "") : "";
    $("low-confidence").hidden = !found || data.confidence >= lowConfidence;
    $("others").hidden = !data.others;
    $("others-count").textContent = data.others ? plural(data.others, "other digit") + " seen" : "";
    $("elapsed").textContent = data.elapsed_ms.toFixed(1);
    $("where").hidden = !data.box;
    $("where-box").textContent = data.box ? data.box.join(",") : "";
    $("where-size").textContent = data.image_size.join(" × ");
    $("where-source").textContent = WHERE_FROM[data.source];
    $("probabilities").hidden = !found;                    // none were computed: no digit
    $("seen-figure").hidden = !data.input_image;           // the network read nothing: nothing was found
    if (data.input_image) $("seen").src = data.input_image;
    const probabilities = data.probabilities || [];
    document.querySelectorAll("#bars .bar-row").forEach(function (row) {
      const i = Number(row.dataset.index);
      const percent = ((probabilities[i] || 0) * 100).toFixed(1) + "%";
      row.querySelector(".bar-fill").style.width = percent;
      row.querySelector(".bar-value").textContent = percent;
      row.classList.toggle("top", found && i === data.digit);
    });
    imageSize = data.image_size;
    const source = data.source === "user" ? "user" : "localiser";
    shown = { box: data.box, source: source,
              tag: source === "user" ? TAGS.user + ": " + (found ? data.digit : "no digit")
                 : data.source === "picture" ? TAGS.picture : found ? TAGS.localiser : TAGS.faint };
    restoreBox();
    draw.tabIndex = 0;
    draw.setAttribute("aria-label", "Your picture, " + imageSize[0] + " by " + imageSize[1] + " pixels" +
      (data.box ? ", box " + (data.source === "user" ? "you drew" : data.source === "picture" ? "read" : "found") + " at " + describe(data.box) : "") +
      ". Drag a box around the digit, or use the arrow keys, to read it there.");
    result.hidden = false;
    $("placeholder").hidden = true;
    document.title = (found ? data.digit : "No digit") + " – Digit recognizer";
    if (window.matchMedia("(max-width: 759px)").matches && data.source !== "user") {
      result.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }

  async function classify(file, box) {
    if (!file) { showError("Choose a picture first."); return; }
    if (file.size > maxBytes) {
      showError("The file is " + (file.size / 1048576).toFixed(1) + " MB; the limit is " + Math.floor(maxBytes / 1048576) +
                " MB. Send a smaller or more compressed picture.");
      return;
    }
    showError("");
    setBusy(true);
    const id = ++requestId;
    const body = new FormData();
    body.append("image", file, file.name || "pasted-image");
    if (box) body.append("box", box.join(","));
    try {
      const response = await fetch("/api/predict", { method: "POST", body: body, headers: { Accept: "application/json" } });
      const data = await response.json().catch(function () { return { error: "The server sent an unreadable answer (" + response.status + ")." }; });
      if (id !== requestId) return;
      if (!response.ok) throw new Error(data.error || "The server refused the picture (" + response.status + ").");
      render(data);
    } catch (err) {
      if (id !== requestId) return;
      restoreBox();
      showError(err instanceof TypeError ? "Cannot reach the server. Check the connection and try again." : err.message);
    } finally {
      if (id === requestId) setBusy(false);
    }
  }

  // ---- choosing a picture -------------------------------------------------------------------

  function useFile(file) {
    if (!file) return;
    currentFile = file;
    showPreview(file);
    classify(file);
  }

  inputs.forEach(function (input) {
    input.addEventListener("change", function () { useFile(input.files[0]); });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    classify(currentFile || inputs[0].files[0] || inputs[1].files[0]);
  });

  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) { event.preventDefault(); dropzone.classList.add("dragging"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function () { dropzone.classList.remove("dragging"); });
  });
  dropzone.addEventListener("drop", function (event) {
    event.preventDefault();
    useFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", function (event) {
    const item = Array.from(event.clipboardData ? event.clipboardData.items : []).find(function (it) {
      return it.kind === "file" && it.type.startsWith("image/");
    });
    if (item) { event.preventDefault(); useFile(item.getAsFile()); }
  });
})();
