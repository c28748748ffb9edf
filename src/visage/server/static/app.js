// The visage web page: enrol from the camera or an upload, identify with an active liveness check.
// Everything goes through the REST API of the server that served this page; no other origin is used.
"use strict";

const $ = (id) => document.getElementById(id);
const video = $("video");
const overlay = $("overlay");
const prompt = $("prompt");

// How the live check records: frames a second, long side of each frame, seconds per action.
const FPS = 10;
const FRAME_SIDE = 480;
const ACTION_SECONDS = 2.0;
const BATCH = 5;
const ACTION_TEXT = {
  turn_left: "Turn your head to your left",
  turn_right: "Turn your head to your right",
  blink: "Blink",
};

// --- API key (kept for this browser tab only) -------------------------------------------------
function apiKey() { return sessionStorage.getItem("visage-key") || ""; }

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("visage-key", $("api-key").value.trim());
  $("api-key").value = "";
  setStatus("key-status", "idle", apiKey() ? "key set for this tab" : "no key");
  refreshPeople();
});

async function api(path, { method = "POST", body = null, json = null } = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  if (json !== null) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  const response = await fetch(path, { method, headers, body });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : `${response.status} ${response.statusText}`;
    throw new Error(detail);
  }
  return data;
}

function setStatus(id, state, text) {
  const el = $(id);
  el.dataset.state = state;
  el.textContent = text;
}

// --- camera -------------------------------------------------------------------------------------
async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    video.srcObject = stream;
    await video.play();
    await new Promise((resolve) => {
      if (video.videoWidth) resolve(); else video.addEventListener("loadedmetadata", resolve, { once: true });
    });
    overlay.width = video.videoWidth;
    overlay.height = video.videoHeight;
    setStatus("camera-status", "ready", `Camera ready (${video.videoWidth}×${video.videoHeight})`);
  } catch (err) {
    setStatus("camera-status", "error", `No camera: ${err.message}. You can still enrol from an upload.`);
  }
}

function cameraReady() { return $("camera-status").dataset.state === "ready"; }

// One video frame as a JPEG blob, scaled so its long side is at most `side`.
function grab(side = 640) {
  const scale = Math.min(1, side / Math.max(video.videoWidth, video.videoHeight));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob((blob) => resolve({ blob, width: canvas.width, height: canvas.height }),
    "image/jpeg", 0.9));
}

// --- drawing results over the video --------------------------------------------------------------
function clearOverlay() { overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height); }

// faces: [{box, name, live}], frameWidth: width of the image the boxes refer to.
function drawFaces(faces, frameWidth, liveText) {
  const ctx = overlay.getContext("2d");
  clearOverlay();
  const k = overlay.width / frameWidth;
  ctx.lineWidth = Math.max(3, overlay.width / 160);
  ctx.font = `${Math.round(overlay.width / 26)}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  for (const face of faces) {
    if (!face.box) continue;
    const ok = Boolean(face.name) && face.live !== false;
    const colour = ok ? "#22c55e" : "#ef4444";
    const x = face.box.left * k, y = face.box.top * k;
    const w = (face.box.right - face.box.left) * k, h = (face.box.bottom - face.box.top) * k;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);
    let label = face.name || "unknown";
    if (liveText) label += ` · ${liveText}`;
    const tw = ctx.measureText(label).width + 12;
    const th = Math.round(overlay.width / 20);
    const ty = y > th ? y : y + h + th;
    ctx.fillStyle = colour;
    ctx.fillRect(x - ctx.lineWidth / 2, ty - th, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x + 6, ty - 4);
  }
  overlay.dataset.drawn = String(faces.filter((f) => f.box).length);
}

function describe(faces) {
  if (!faces.length) return "no face found";
  return faces.map((f) => f.name ? `${f.name} (distance ${f.distance.toFixed(3)})` : "unknown").join(", ");
}

// --- enrolment -----------------------------------------------------------------------------------
async function enrol(photos) {
  const name = $("enrol-name").value.trim();
  if (!name) { setStatus("enrol-status", "error", "Type the person's name first."); return; }
  const form = new FormData();
  form.append("name", name);
  photos.forEach((p, i) => form.append("photos", p.blob, p.name || `camera-${i + 1}.jpg`));
  setStatus("enrol-status", "busy", `Enrolling ${name}…`);
  try {
    const report = await api("/v1/enroll", { body: form });
    const skipped = report.skipped.length ? `; skipped ${report.skipped.map((s) => `${s.photo}: ${s.reason}`).join("; ")}` : "";
    setStatus("enrol-status", "done", `Enrolled ${report.name}: ${report.faces_added} face(s) added${skipped}`);
    refreshPeople();
  } catch (err) {
    setStatus("enrol-status", "error", `Not enrolled: ${err.message}`);
  }
}

$("enrol-camera").addEventListener("click", async () => {
  if (!cameraReady()) { setStatus("enrol-status", "error", "The camera is not available."); return; }
  await busy(["enrol-camera", "enrol-upload"], async () => enrol([await grab(640)]));
});

$("enrol-upload").addEventListener("click", async () => {
  const files = Array.from($("enrol-files").files);
  if (!files.length) { setStatus("enrol-status", "error", "Choose one or more photos first."); return; }
  await busy(["enrol-camera", "enrol-upload"], async () => enrol(files.map((f) => ({ blob: f, name: f.name }))));
});

async function busy(ids, work) {
  ids.forEach((id) => { $(id).disabled = true; });
  try { await work(); } finally { ids.forEach((id) => { $(id).disabled = false; }); }
}

// --- identification from one snapshot ------------------------------------------------------------
$("identify-snapshot").addEventListener("click", async () => {
  if (!cameraReady()) { setStatus("result", "error", "The camera is not available."); return; }
  await busy(["identify-snapshot", "live-check"], async () => {
    setStatus("result", "busy", "Identifying…");
    try {
      const shot = await grab(640);
      const form = new FormData();
      form.append("image", shot.blob, "snapshot.jpg");
      const answer = await api("/v1/identify", { body: form });
      drawFaces(answer.faces, shot.width, "");
      setStatus("result", "done", `Snapshot: ${describe(answer.faces)} (no liveness check)`);
    } catch (err) {
      setStatus("result", "error", `Identification failed: ${err.message}`);
    }
  });
});

// --- identification with an active liveness challenge --------------------------------------------
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function sendFrames(id, frames) {
  const form = new FormData();
  frames.forEach((f, i) => form.append("frames", f.blob, `frame-${i}.jpg`));
  form.append("times", frames.map((f) => f.time.toFixed(1)).join(","));
  return api(`/v1/liveness/challenges/${id}/frames`, { body: form });
}

$("live-check").addEventListener("click", async () => {
  if (!cameraReady()) { setStatus("result", "error", "The camera is not available."); return; }
  await busy(["identify-snapshot", "live-check"], async () => {
    clearOverlay();
    overlay.dataset.drawn = "0";
    delete $("result").dataset.admitted;
    try {
      const challenge = await api("/v1/liveness/challenges");
      setStatus("result", "busy", `Live check: ${challenge.actions.map((a) => ACTION_TEXT[a]).join(", then ")}`);
      const total = Math.min(challenge.max_frames, Math.round(FPS * ACTION_SECONDS * (challenge.actions.length + 1)));
      const uploads = [];
      let pending = [];
      let frameWidth = 0;
      const started = performance.now();
      prompt.hidden = false;
      prompt.textContent = "Look at the camera";
      for (let n = 0; n < total; n++) {
        // The first second is a neutral look; then one action per ACTION_SECONDS.
        const seconds = (performance.now() - started) / 1000;
        const step = Math.floor((seconds - 1) / ACTION_SECONDS);
        if (seconds >= 1 && step < challenge.actions.length) prompt.textContent = ACTION_TEXT[challenge.actions[step]];
        const frame = await grab(FRAME_SIDE);
        frameWidth = frame.width;
        pending.push({ blob: frame.blob, time: performance.now() - started });
        if (pending.length === BATCH) { uploads.push(sendFrames(challenge.id, pending)); pending = []; }
        const next = started + ((n + 1) * 1000) / FPS;
        await sleep(Math.max(0, next - performance.now()));
      }
      if (pending.length) uploads.push(sendFrames(challenge.id, pending));
      prompt.textContent = "Checking…";
      await Promise.all(uploads);
      const verdict = await api(`/v1/liveness/challenges/${challenge.id}/verdict?identify=true`);
      prompt.hidden = true;
      showVerdict(verdict, frameWidth);
    } catch (err) {
      prompt.hidden = true;
      setStatus("result", "error", `Live check failed: ${err.message}`);
    }
  });
});

function showVerdict(verdict, frameWidth) {
  const live = verdict.liveness;
  // Entry needs both: a live face and the actions done in the order asked.
  const liveText = verdict.admitted ? "live" : (verdict.passed ? live.decision : "challenge failed");
  const width = verdict.frame_size ? verdict.frame_size[0] : frameWidth;
  drawFaces(verdict.faces, width, liveText);
  const who = verdict.faces.length ? describe(verdict.faces) : "no face identified";
  const score = live.score === null ? "" : ` (score ${live.score.toFixed(2)})`;
  const seen = live.evidence.challenge ? ` (asked ${verdict.actions.join(", ")}; seen ${live.evidence.challenge.observed.join(", ") || "nothing"})` : "";
  setStatus("result", "done", `Live check: ${liveText}${score}${seen}: ${live.reason}. Identity: ${who}`);
  $("result").dataset.decision = liveText;
  $("result").dataset.admitted = String(verdict.admitted);
}

// --- people ----------------------------------------------------------------------------------------
async function refreshPeople() {
  if (!apiKey()) return;
  try {
    const people = await api("/v1/people", { method: "GET" });
    const list = $("people");
    list.replaceChildren(...people.map((p) => {
      const li = document.createElement("li");
      li.textContent = `${p.name} (${p.faces} face${p.faces === 1 ? "" : "s"})`;
      return li;
    }));
  } catch (err) {
    setStatus("key-status", "error", err.message);
  }
}
$("people-refresh").addEventListener("click", refreshPeople);

setStatus("key-status", "idle", apiKey() ? "key set for this tab" : "no key set");
startCamera();
refreshPeople();
