// Digit recognizer page: choose, drop or paste a picture, preview it, classify it with /api/predict
// and fill in the result that the server also renders for the no-JavaScript form.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  const form = document.getElementById("upload-form");
  const inputs = [document.getElementById("image"), document.getElementById("camera")];
  const dropzone = document.getElementById("dropzone");
  const preview = document.getElementById("preview");
  const submit = document.getElementById("submit");
  const errorBox = document.getElementById("error");
  const result = document.getElementById("result");
  const maxBytes = Number(form.dataset.maxBytes);
  const lowConfidence = Number(form.dataset.lowConfidence);
  const submitLabel = submit.textContent;
  let currentFile = null;
  let previewUrl = null;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function setBusy(busy) {
    submit.disabled = busy;
    submit.textContent = busy ? "Recognising…" : submitLabel;
    form.setAttribute("aria-busy", String(busy));
  }

  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.hidden = false;
    dropzone.classList.add("has-preview");
    document.getElementById("change-hint").hidden = false;
  }

  function render(data) {
    document.getElementById("digit").textContent = data.digit;
    document.getElementById("confidence").textContent = (data.confidence * 100).toFixed(1) + "%";
    document.getElementById("low-confidence").hidden = data.confidence >= lowConfidence;
    document.getElementById("elapsed").textContent = data.elapsed_ms.toFixed(1);
    document.getElementById("seen").src = data.input_image;
    document.querySelectorAll("#bars .bar-row").forEach(function (row) {
      const i = Number(row.dataset.index);
      const percent = (data.probabilities[i] * 100).toFixed(1) + "%";
      row.querySelector(".bar-fill").style.width = percent;
      row.querySelector(".bar-value").textContent = percent;
      row.classList.toggle("top", i === data.digit);
    });
    result.hidden = false;
    document.getElementById("placeholder").hidden = true;
    document.title = data.digit + " – Digit recognizer";
    if (window.matchMedia("(max-width: 759px)").matches) result.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  async function classify(file) {
    if (!file) { showError("Choose a picture first."); return; }
    if (file.size > maxBytes) {
      showError("The file is " + (file.size / 1e6).toFixed(1) + " MB; the limit is 1 MB. Send a smaller or more compressed picture.");
      return;
    }
    showError("");
    setBusy(true);
    const body = new FormData();
    body.append("image", file, file.name || "pasted-image");
    try {
      const response = await fetch("/api/predict", { method: "POST", body: body, headers: { Accept: "application/json" } });
      const data = await response.json().catch(function () { return { error: "The server sent an unreadable answer (" + response.status + ")." }; });
      if (!response.ok) throw new Error(data.error || "The server refused the picture (" + response.status + ").");
      render(data);
    } catch (err) {
      showError(err instanceof TypeError ? "Cannot reach the server. Check the connection and try again." : err.message);
    } finally {
      setBusy(false);
    }
  }

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
