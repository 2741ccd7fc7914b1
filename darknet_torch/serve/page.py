"""``GET /``: one self-contained page to upload an image and see the service's boxes drawn over it.

The page posts the file to ``/predict`` and draws the JSON answer on a canvas, so what it shows is exactly what an
API client gets.  Class names are inserted as text (``textContent``, ``fillText``), never as HTML.
"""

#: Sent with the page: no third-party resources, inline script and style only, requests to this origin only.
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob:; "
            "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>darknet_torch</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
  form { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; margin-bottom: 1rem; }
  canvas { max-width: 100%; height: auto; border: 1px solid #ccc; }
  #status.error { color: #b00020; }
  td, th { padding: 0.15rem 0.6rem; text-align: left; }
</style>
</head>
<body>
<h1>darknet_torch</h1>
<form id="form">
  <input id="image" name="image" type="file" accept="image/*" required>
  <label>threshold <input id="thresh" name="thresh" type="number" min="0" max="1" step="0.05"
         value="__THRESH__"></label>
  <label><input id="letter_box" type="checkbox" __LETTER_BOX__> letter box</label>
  <button id="detect" type="submit">Detect</button>
</form>
<p id="status">Choose an image.</p>
<canvas id="canvas" width="0" height="0"></canvas>
<table><thead><tr><th>class</th><th>score</th><th>left</th><th>top</th><th>right</th><th>bottom</th></tr></thead>
<tbody id="rows"></tbody></table>
<script>
"use strict";
const form = document.getElementById("form");
const statusLine = document.getElementById("status");
const canvas = document.getElementById("canvas");
const rows = document.getElementById("rows");

function colour(classId) { return `hsl(${(classId * 137.508) % 360}, 90%, 45%)`; }

function show(message, isError) {
  statusLine.textContent = message;
  statusLine.className = isError ? "error" : "";
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this file"));
    img.src = URL.createObjectURL(file);
  });
}

function draw(img, result) {
  canvas.width = result.width;
  canvas.height = result.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, result.width, result.height);
  const line = Math.max(2, Math.round(0.003 * (result.width + result.height)));
  const fontSize = Math.max(12, Math.round(0.015 * (result.width + result.height)));
  ctx.font = `${fontSize}px sans-serif`;
  ctx.textBaseline = "top";
  // least confident first, so the most confident box and label end on top (as Darknet draws them)
  const byScore = [...result.detections].sort((a, b) => a.score - b.score);
  for (const det of byScore) {
    const b = det.box;
    const left = Math.max(0, b.left), top = Math.max(0, b.top);
    const right = Math.min(result.width - 1, b.right), bottom = Math.min(result.height - 1, b.bottom);
    ctx.strokeStyle = ctx.fillStyle = colour(det.class_id);
    ctx.lineWidth = line;
    ctx.strokeRect(left, top, right - left, bottom - top);
    const label = `${det.name} ${(100 * det.score).toFixed(0)}%`;
    const labelTop = Math.max(0, top - fontSize - 4);
    ctx.fillRect(left, labelTop, ctx.measureText(label).width + 6, fontSize + 4);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, left + 3, labelTop + 2);
  }
  rows.replaceChildren();
  for (const det of byScore.reverse()) {
    const b = det.box;
    const row = rows.insertRow();
    for (const value of [det.name, det.score.toFixed(3), b.left.toFixed(1), b.top.toFixed(1),
                         b.right.toFixed(1), b.bottom.toFixed(1)]) {
      row.insertCell().textContent = value;
    }
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("image").files[0];
  if (!file) { show("Choose an image first.", true); return; }
  const body = new FormData();
  body.append("image", file);
  body.append("thresh", document.getElementById("thresh").value);
  body.append("letter_box", document.getElementById("letter_box").checked ? "1" : "0");
  show("Detecting...", false);
  try {
    const response = await fetch("predict", { method: "POST", body });
    const result = await response.json();
    if (!response.ok) { show(`Error ${response.status}: ${result.error}`, true); return; }
    draw(await loadImage(file), result);
    show(`${result.detections.length} detection(s) in ${(1000 * result.seconds).toFixed(0)} ms.`, false);
  } catch (error) {
    show(`Error: ${error.message}`, true);
  }
});
</script>
</body>
</html>
"""


def render_page(thresh: float, letter_box: bool) -> str:
    """The page with the service's default settings filled in."""
    return PAGE_HTML.replace("__THRESH__", f"{thresh:g}").replace("__LETTER_BOX__", "checked" if letter_box else "")
