// The dan-align demo page: send a photo (or webcam frames) to POST /align and draw the answer.
//
// Plain JavaScript, no build step, no library. Every request is relative to this page (the
// service that served it): `align`, `demo/landmark-style.json`. The drawing table (regions,
// their points, closed or not, colours) comes from landmark-style.json, generated from
// dan_align/drawing.py, which the command line draws with too.
//
// Parts:
//   service        postAlign(): one POST /align, errors as the service words them
//   transports     how frames reach the service: HttpFrameTransport (POST /align per frame);
//                  a stream transport (a WebSocket) plugs in beside it with the same
//                  send()/close() when the service has a stream endpoint (chooseTransport)
//   overlay        render(): the SVG over the photo, in image pixels (one element per landmark)
//   panels         faces table, timings, raw JSON, error box, status line
//   modes          photo mode (file input, drag and drop) and webcam mode

const SVG_NS = "http://www.w3.org/2000/svg"; // an XML namespace name, not a request
const ALIGN_URL = new URL("align", document.baseURI);
const STYLE_URL = new URL("demo/landmark-style.json", document.baseURI);
const WEBCAM_JPEG_QUALITY = 0.85;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// The service

class ServiceError extends Error {
  // status: the HTTP status (0 when the service could not be reached); error, detail: the
  // service's own {"error", "detail"}; retryAfterS: its Retry-After, if any; body: raw text.
  constructor(status, error, detail, { retryAfterS = null, body = "" } = {}) {
    super(`${error}: ${detail}`);
    this.status = status;
    this.error = error;
    this.detail = detail;
    this.retryAfterS = retryAfterS;
    this.body = body;
  }
}

function requestOptions() {
  return { boxes: $("boxes").value.trim(), apiKey: $("api-key").value.trim() };
}

async function postAlign(blob, filename, { boxes = "", apiKey = "", signal } = {}) {
  const form = new FormData();
  form.append("image", blob, filename);
  if (boxes) form.append("boxes", boxes);
  const headers = { Accept: "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const started = performance.now();
  let response;
  try {
    response = await fetch(ALIGN_URL, { method: "POST", body: form, headers, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ServiceError(0, "unreachable", `could not reach the service at ${ALIGN_URL.origin}: ${e.message}`);
  }
  const text = await response.text();
  const roundTripMs = performance.now() - started;
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok) {
    const retry = Number.parseFloat(response.headers.get("Retry-After") ?? "");
    const extra = { retryAfterS: Number.isFinite(retry) ? retry : null, body: text };
    if (body && typeof body.error === "string") {
      throw new ServiceError(response.status, body.error, String(body.detail ?? ""), extra);
    }
    throw new ServiceError(response.status, `http_${response.status}`, text.slice(0, 300) || response.statusText, extra);
  }
  if (!body || !Array.isArray(body.faces) || !body.image) {
    throw new ServiceError(response.status, "unexpected_answer", "the answer is not an /align answer", { body: text });
  }
  return { answer: body, roundTripMs };
}

// ---------------------------------------------------------------------------------------------
// Transports: how webcam frames reach the service. Each has send(blob) -> {answer, roundTripMs}
// and close(). The service has no stream endpoint yet, so chooseTransport() gives the HTTP one;
// a WebSocket transport to the stream endpoint goes in TRANSPORTS and is chosen there.

class HttpFrameTransport {
  static kind = "http";

  async send(blob) {
    return postAlign(blob, "frame.jpg", requestOptions());
  }

  close() {}
}

const TRANSPORTS = { http: HttpFrameTransport };

function chooseTransport() {
  return new TRANSPORTS.http();
}

// ---------------------------------------------------------------------------------------------
// The drawing table (landmark-style.json) and the SVG overlay

let drawingStyle = null; // {box_colour, regions: [{name, points, closed, colour}]}
let regionOfPoint = []; // landmark index -> region

async function loadStyle() {
  const response = await fetch(STYLE_URL);
  if (!response.ok) throw new Error(`cannot load ${STYLE_URL.pathname}: HTTP ${response.status}`);
  drawingStyle = await response.json();
  regionOfPoint = [];
  for (const region of drawingStyle.regions) {
    for (const index of region.points) regionOfPoint[index] = region;
  }
  const legend = $("legend");
  legend.replaceChildren();
  const seen = new Set();
  for (const region of drawingStyle.regions) {
    const label = region.name.replace(/^(right|left)_/, "").replace("_", " ");
    if (seen.has(label)) continue;
    seen.add(label);
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = region.colour;
    item.append(swatch, label);
    legend.append(item);
  }
}

function svgElement(name, attributes, parent) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (parent) parent.append(element);
  return element;
}

// Landmarks and boxes are in image pixels with the centre of the top-left pixel at (0, 0); the
// SVG's user space has the top-left corner of that pixel at (0, 0): hence the half pixel.
const PIXEL_CENTRE = 0.5;

function render(answer) {
  const svg = $("overlay");
  const { width, height } = answer.image;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.dataset.width = width;
  svg.dataset.height = height;
  svg.replaceChildren();
  answer.faces.forEach((face, faceIndex) => {
    const group = svgElement("g", { class: "face", "data-face": faceIndex }, svg);
    const [x0, y0, x1, y1] = face.box;
    const side = Math.max(x1 - x0, y1 - y0, 1);
    svgElement("rect", {
      class: "box",
      "data-face": faceIndex,
      x: x0 + PIXEL_CENTRE,
      y: y0 + PIXEL_CENTRE,
      width: x1 - x0,
      height: y1 - y0,
      stroke: drawingStyle.box_colour,
      "vector-effect": "non-scaling-stroke",
    }, group);
    const label = svgElement("text", {
      class: "label",
      x: x0 + PIXEL_CENTRE,
      y: y0 + PIXEL_CENTRE - side * 0.03,
      fill: drawingStyle.box_colour,
      "font-size": Math.max(side * 0.12, 8),
    }, group);
    label.textContent = String(faceIndex + 1);
    const at = (index) => `${face.landmarks[index][0] + PIXEL_CENTRE},${face.landmarks[index][1] + PIXEL_CENTRE}`;
    for (const region of drawingStyle.regions) {
      svgElement(region.closed ? "polygon" : "polyline", {
        class: "contour",
        "data-face": faceIndex,
        "data-region": region.name,
        points: region.points.map(at).join(" "),
        stroke: region.colour,
        "vector-effect": "non-scaling-stroke",
      }, group);
    }
    const radius = Math.max(side / 110, 1.2);
    face.landmarks.forEach(([x, y], index) => {
      const region = regionOfPoint[index];
      svgElement("circle", {
        class: "landmark",
        "data-face": faceIndex,
        "data-index": index,
        "data-region": region ? region.name : "",
        "data-x": x,
        "data-y": y,
        cx: x + PIXEL_CENTRE,
        cy: y + PIXEL_CENTRE,
        r: radius,
        fill: region ? region.colour : drawingStyle.box_colour,
        "vector-effect": "non-scaling-stroke",
      }, group);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Panels

const number = (value, digits = 1) => (typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—");

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function showError(error) {
  $("error-status").textContent = error.status ? `HTTP ${error.status}` : "";
  $("error-reason").textContent = error.error ?? "error";
  $("error-detail").textContent = error.detail ?? String(error);
  $("error").hidden = false;
  if (error.body) {
    $("raw").textContent = error.body;
    $("answer").hidden = false;
  }
}

function clearError() {
  $("error").hidden = true;
}

// The faces table: a column per face, a row per field. The optional fields get a row only when
// some face of the answer has them (services before confidence and pose send none).
const FIELDS = [
  ["box", "box x0, y0, x1, y1", (face) => face.box.map((v) => v.toFixed(0)).join(", ")],
  ["box_source", "from", (face) => face.box_source ?? "—"],
  ["score", "detector score", (face) => number(face.score, 3)],
  ["confidence", "confidence", (face) => number(face.confidence, 3), (face) => face.confidence != null],
  ["status", "status", (face) => face.status ?? "—", (face) => face.status != null],
  ["yaw", "yaw °", (face) => number(face.pose?.yaw), (face) => face.pose != null],
  ["pitch", "pitch °", (face) => number(face.pose?.pitch), (face) => face.pose != null],
  ["roll", "roll °", (face) => number(face.pose?.roll), (face) => face.pose != null],
  ["queue_wait_ms", "queue wait ms", (face) => number(face.timings?.queue_wait_ms)],
  ["inference_ms", "inference ms", (face) => number(face.timings?.inference_ms)],
];

function showFaces(answer) {
  const faces = answer.faces;
  const fields = FIELDS.filter(([, , , present]) => !present || faces.some(present));
  const corner = document.createElement("th");
  corner.textContent = faces.length ? "" : "no face found";
  const head = $("faces").tHead.rows[0];
  head.replaceChildren(corner, ...faces.map((_face, i) => {
    const th = document.createElement("th");
    th.dataset.face = i;
    th.textContent = `face ${i + 1}`;
    return th;
  }));
  $("faces").tBodies[0].replaceChildren(...(faces.length ? fields : []).map(([key, title, value]) => {
    const row = document.createElement("tr");
    row.dataset.field = key;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = title;
    row.append(th, ...faces.map((face, i) => {
      const td = document.createElement("td");
      td.dataset.face = i;
      td.dataset.field = key;
      td.textContent = value(face);
      return td;
    }));
    return row;
  }));
}

function showTimings(answer, roundTripMs, extra = {}) {
  const first = answer.faces[0]?.timings;
  const entries = [
    ["round trip (this page)", `${number(roundTripMs)} ms`],
    ["service total", first ? `${number(first.total_ms)} ms` : "—"],
    ["decode and crop", first ? `${number(first.decode_ms)} ms` : "—"],
    ["face detection", first && first.detect_ms != null ? `${number(first.detect_ms)} ms` : "—"],
    ["model", `${answer.model?.name ?? "?"} ${answer.model?.version ?? ""}`],
    ["image", `${answer.image.width} × ${answer.image.height} px`],
    ...Object.entries(extra),
  ];
  $("timings").replaceChildren(...entries.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    return [dt, dd];
  }));
}

function showAnswer(answer, roundTripMs, extra) {
  render(answer);
  showFaces(answer);
  showTimings(answer, roundTripMs, extra);
  $("raw").textContent = JSON.stringify(answer, null, 2);
  $("results").hidden = false;
  $("answer").hidden = false;
}

async function copyJson() {
  const text = $("raw").textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("raw"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  $("copy").textContent = "Copied";
  setTimeout(() => { $("copy").textContent = "Copy JSON"; }, 1500);
}

// ---------------------------------------------------------------------------------------------
// Photo mode

let photoUrl = null;
let photoRequest = 0; // the latest photo's number: older answers arriving late are dropped

async function alignPhoto(file) {
  await webcam.stop();
  const request = ++photoRequest;
  clearError();
  setStatus("sending", `Aligning ${file.name} …`);
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  const photo = $("photo");
  const shown = new Promise((resolve) => {
    photo.onload = () => resolve(true);
    photo.onerror = () => resolve(false);
  });
  photo.src = photoUrl;
  photo.hidden = false;
  $("video").hidden = true;
  $("overlay").replaceChildren();
  $("stage").hidden = false;
  try {
    const [{ answer, roundTripMs }] = await Promise.all([postAlign(file, file.name, requestOptions()), shown]);
    if (request !== photoRequest) return;
    showAnswer(answer, roundTripMs);
    const count = answer.faces.length;
    setStatus("done", `${file.name}: ${count} face${count === 1 ? "" : "s"} in ${number(roundTripMs, 0)} ms.`);
  } catch (error) {
    if (request !== photoRequest) return;
    $("stage").hidden = true;
    $("results").hidden = true;
    $("answer").hidden = true;
    showError(error);
    setStatus("error", `${file.name}: not aligned.`);
  }
}

function setUpPhotoInput() {
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) alignPhoto(file);
    event.target.value = "";
  });
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const [file] = event.dataTransfer.files;
    if (file) alignPhoto(file);
  });
  // Dropping anywhere else on the page must not navigate away from it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

// ---------------------------------------------------------------------------------------------
// Webcam mode: grab a frame, send it, draw its answer, repeat (one frame in flight).

class Webcam {
  constructor() {
    this.running = false;
    this.stream = null;
    this.transport = null;
    this.loop = null;
    this.canvas = document.createElement("canvas");
  }

  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new ServiceError(0, "webcam_unavailable", "this browser offers no webcam here (browsers allow it on https:// pages and on localhost only)");
    }
    photoRequest += 1; // a photo still in flight is not drawn over the video
    clearError();
    this.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    const video = $("video");
    video.srcObject = this.stream;
    await video.play();
    video.hidden = false;
    $("photo").hidden = true;
    $("overlay").replaceChildren();
    $("stage").hidden = false;
    this.transport = chooseTransport();
    this.running = true;
    this.frames = 0;
    this.startedAt = performance.now();
    $("webcam").dataset.running = "true";
    $("webcam").textContent = "Stop the webcam";
    setStatus("streaming", `Webcam: frames go to /align one by one (${this.transport.constructor.kind}).`);
    this.loop = this.run();
  }

  async run() {
    const video = $("video");
    while (this.running) {
      const width = video.videoWidth;
      const height = video.videoHeight;
      if (!width || !height) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      this.canvas.width = width;
      this.canvas.height = height;
      this.canvas.getContext("2d").drawImage(video, 0, 0, width, height);
      const blob = await new Promise((resolve) => this.canvas.toBlob(resolve, "image/jpeg", WEBCAM_JPEG_QUALITY));
      try {
        const { answer, roundTripMs } = await this.transport.send(blob);
        if (!this.running) break;
        this.frames += 1;
        const fps = (this.frames * 1000) / (performance.now() - this.startedAt);
        clearError();
        showAnswer(answer, roundTripMs, { "frames answered": String(this.frames), "frames per second": number(fps) });
        $("status").dataset.frames = String(this.frames);
      } catch (error) {
        if (!this.running) break;
        showError(error);
        if (error.status === 503) {
          await new Promise((resolve) => setTimeout(resolve, 1000 * (error.retryAfterS ?? 1)));
          continue;
        }
        this.release();
        setStatus("error", "Webcam stopped.");
        return;
      }
    }
  }

  // Stop the camera and the loop; the loop itself calls this when it gives up.
  release() {
    this.running = false;
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.transport?.close();
    this.transport = null;
    $("video").srcObject = null;
    $("webcam").dataset.running = "false";
    $("webcam").textContent = "Use the webcam";
  }

  async stop() {
    if (!this.running && !this.stream) return;
    this.release();
    const loop = this.loop;
    this.loop = null;
    if (loop) await loop.catch(() => {});
    setStatus("idle", "Webcam stopped.");
  }
}

const webcam = new Webcam();

function setUpWebcam() {
  $("webcam").addEventListener("click", async () => {
    if (webcam.running) {
      await webcam.stop();
      return;
    }
    try {
      await webcam.start();
    } catch (error) {
      await webcam.stop();
      showError(error instanceof ServiceError ? error : new ServiceError(0, error.name || "webcam_error", error.message));
      setStatus("error", "The webcam could not be started.");
    }
  });
}

// ---------------------------------------------------------------------------------------------

async function main() {
  $("copy").addEventListener("click", copyJson);
  setUpPhotoInput();
  setUpWebcam();
  try {
    await loadStyle();
    document.body.dataset.ready = "true";
  } catch (error) {
    showError(new ServiceError(0, "page_error", error.message));
    setStatus("error", "The page could not load its drawing table.");
  }
}

main();
