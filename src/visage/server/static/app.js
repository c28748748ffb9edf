// The visage web page: enrol from the camera or an upload, identify with an active liveness check,
// and manage the people enrolled. Everything goes through the REST API of the server that served
// this page; no other origin is used.
//
// Every message status line has a state that sets its colour: "ok" (green: recognised, done),
// "warn" (amber: not recognised, partly done, not enough evidence), "error" (red: refused, failed),
// "busy" and "idle" (neutral).
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
const COLOUR = { ok: "#16a34a", warn: "#d97706", error: "#dc2626" };

function setStatus(id, state, text) {
  const el = $(id);
  el.dataset.state = state;
  el.textContent = text;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// --- the access key ----------------------------------------------------------------------------
// Kept in sessionStorage: it survives a reload of this tab, but not closing the tab, and other tabs
// and later users of this browser never see it. localStorage would keep an admin key on the disk
// of a shared front-desk computer until someone thought to remove it.
const KEY = "visage-key";
let keyInfo = null; // {id, name, admin} once the server has accepted the key

function apiKey() { return sessionStorage.getItem(KEY) || ""; }
function isAdmin() { return Boolean(keyInfo && keyInfo.admin); }

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("api-key").value = "";
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
  checkKey();
});

$("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  checkKey();
});

async function checkKey() {
  keyInfo = null;
  forgetThumbnails(); // another key may not be allowed to see them
  showKey();
  if (!apiKey()) {
    setStatus("key-status", "idle", "Paste the access key you were given.");
    return;
  }
  setStatus("key-status", "busy", "Checking the key…");
  try {
    keyInfo = await api("/v1/key", { method: "GET" });
    setStatus("key-status", "ok", isAdmin() ? `Key “${keyInfo.name}”`
      : `Key “${keyInfo.name}”: can identify people, not enrol or change them`);
  } catch (err) {
    if (err.status === 401) sessionStorage.removeItem(KEY); // revoked or mistyped: do not keep it
    setStatus("key-status", "error", plainError(err));
  }
  showKey();
  refreshPeople();
}

function showKey() {
  $("key-badge").hidden = !isAdmin();
  $("key-forget").hidden = !apiKey();
  const mayEnrol = !keyInfo || isAdmin(); // before the key is known, let the server say
  ["enrol-camera", "enrol-upload"].forEach((id) => { $(id).disabled = !mayEnrol; });
  $("enrol-hint").hidden = mayEnrol;
}

// --- talking to the server -------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; this.detail = detail; }
}

async function api(path, { method = "POST", body = null, json = null, blob = false, retry = true } = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  if (json !== null) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (err) {
    throw new ApiError(0, "network");
  }
  if (response.status === 429 && retry) { // over the key's rate limit: wait as asked, once
    const wait = Number(response.headers.get("Retry-After")) || 2;
    await sleep(Math.min(wait, 10) * 1000);
    return api(path, { method, body, blob, retry: false });
  }
  if (response.ok && blob) return response.blob();
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) throw new ApiError(response.status, data && data.detail ? String(data.detail) : response.statusText);
  return data;
}

// What went wrong, said for the person in front of the page (the server's wording is for developers).
function plainError(err) {
  if (!(err instanceof ApiError)) return "Something went wrong on this page. Reload it and try again.";
  switch (err.status) {
    case 0: return "Cannot reach the server. Check the connection and try again.";
    case 401: return apiKey() ? "This key was not accepted: it may be mistyped or withdrawn. Paste a valid key."
      : "Paste your access key first (at the top of the page).";
    case 403: return "This key can identify people but not enrol or change them. Use an admin key.";
    case 404: return "Not found: it may have been removed already.";
    case 409: return err.detail.includes("already a person") ? "That name is already taken." : "Not possible right now. Try again.";
    case 413: return "That upload is too large. Send fewer or smaller photos.";
    case 429: return "Too many requests. Wait a moment and try again.";
    default:
      if (err.status >= 500) return "The server could not do this right now. Try again in a moment.";
      return photoProblem(err.detail);
  }
}

// The reason a photo was not used, in plain words.
function photoProblem(reason) {
  if (/no face found/.test(reason)) return "No face found: face the camera, in good light.";
  if (/faces found/.test(reason)) return "More than one face: only the person to enrol should be in view.";
  const owner = reason.match(/already enrolled \(as (.*)\)/);
  if (owner) return `This picture is already enrolled (as ${owner[1]}).`;
  if (/same photo twice/.test(reason)) return "The same photo was chosen twice.";
  if (/not an image|cannot read|truncated/.test(reason)) return "Not a photo this page can read.";
  if (/MP limit|too many pixels|larger than/.test(reason)) return "That photo is too large.";
  return reason;
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
    setStatus("camera-status", "ready", "Camera ready");
  } catch (err) {
    setStatus("camera-status", "error", "No camera available (or it was not allowed). You can still enrol from photos.");
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

// faces: [{box, label, state}], frameWidth: width of the image the boxes refer to.
function drawFaces(faces, frameWidth) {
  const ctx = overlay.getContext("2d");
  clearOverlay();
  const k = overlay.width / frameWidth;
  ctx.lineWidth = Math.max(3, overlay.width / 160);
  ctx.font = `${Math.round(overlay.width / 26)}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  for (const face of faces) {
    if (!face.box) continue;
    const colour = COLOUR[face.state];
    const x = face.box.left * k, y = face.box.top * k;
    const w = (face.box.right - face.box.left) * k, h = (face.box.bottom - face.box.top) * k;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);
    const tw = ctx.measureText(face.label).width + 12;
    const th = Math.round(overlay.width / 20);
    const ty = y > th ? y : y + h + th;
    ctx.fillStyle = colour;
    ctx.fillRect(x - ctx.lineWidth / 2, ty - th, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(face.label, x + 6, ty - 4);
  }
  overlay.dataset.drawn = String(faces.filter((f) => f.box).length);
}

function showResult(state, text, details, decision) {
  setStatus("result", state, text);
  $("result").dataset.decision = decision || "";
  $("result-more").textContent = details || "";
  $("result-details").hidden = !details;
}

function matchDetails(faces) {
  return faces.map((f, i) => {
    const best = f.candidates && f.candidates[0];
    const nearest = best ? `nearest ${best.name} at distance ${best.distance.toFixed(3)}` : "no one enrolled";
    return `face ${i + 1}: ${nearest} (threshold ${f.threshold.toFixed(3)})`;
  }).join("\n");
}

// --- enrolment -----------------------------------------------------------------------------------
async function enrol(photos) {
  const name = $("enrol-name").value.trim();
  if (!name) { setStatus("enrol-status", "error", "Type the person's name first."); return; }
  setStatus("enrol-status", "busy", `Enrolling ${name}…`);
  let people = [];
  try { people = await api("/v1/people", { method: "GET" }); } catch (err) {
    setStatus("enrol-status", "error", plainError(err));
    return;
  }
  const known = people.find((p) => p.name === name);
  if (known && !window.confirm(`${name} is already enrolled with ${plural(known.faces, "face")}. `
      + `Add ${photos.length === 1 ? "another face" : "these photos"} to ${name}?`)) {
    setStatus("enrol-status", "idle", `Nothing added to ${name}.`);
    return;
  }
  const form = new FormData();
  form.append("name", name);
  photos.forEach((p, i) => form.append("photos", p.blob, p.name || `camera-${i + 1}.jpg`));
  setStatus("enrol-status", "busy", `Enrolling ${name}…`);
  try {
    const report = await api("/v1/enroll", { body: form });
    const faces = report.faces_added;
    const total = known ? known.faces + faces : faces;
    const done = known ? `Added ${plural(faces, "face")} to ${report.name} (${total} in all)` : `Enrolled ${report.name}`;
    if (report.skipped.length) {
      const why = report.skipped.map((s) => `${s.photo}: ${photoProblem(s.reason)}`).join(" ");
      setStatus("enrol-status", "warn", `${done} from ${faces} of ${photos.length} photos. Not used: ${why}`);
    } else {
      setStatus("enrol-status", "ok", `${done}.`);
    }
    refreshPeople();
  } catch (err) {
    setStatus("enrol-status", "error", `${name} was not enrolled. ${plainError(err)}`);
  }
}

$("enrol-camera").addEventListener("click", async () => {
  if (!cameraReady()) { setStatus("enrol-status", "error", "The camera is not available."); return; }
  setStatus("enrol-status", "busy", "Taking a picture…");
  await busy(["enrol-camera", "enrol-upload"], async () => enrol([await grab(640)]));
});

$("enrol-upload").addEventListener("click", async () => {
  const files = Array.from($("enrol-files").files);
  if (!files.length) { setStatus("enrol-status", "error", "Choose one or more photos first."); return; }
  setStatus("enrol-status", "busy", "Sending the photos…");
  await busy(["enrol-camera", "enrol-upload"], async () => enrol(files.map((f) => ({ blob: f, name: f.name }))));
});

async function busy(ids, work) {
  ids.forEach((id) => { $(id).disabled = true; });
  try { await work(); } finally { ids.forEach((id) => { $(id).disabled = false; }); showKey(); }
}

// --- identification from one snapshot ------------------------------------------------------------
$("identify-snapshot").addEventListener("click", async () => {
  if (!cameraReady()) { showResult("error", "The camera is not available."); return; }
  await busy(["identify-snapshot", "live-check"], async () => {
    showResult("busy", "Identifying…");
    try {
      const shot = await grab(640);
      const form = new FormData();
      form.append("image", shot.blob, "snapshot.jpg");
      const answer = await api("/v1/identify", { body: form });
      const faces = answer.faces.map((f) => ({ box: f.box, label: f.name || "Not recognised", state: f.name ? "ok" : "warn" }));
      drawFaces(faces, shot.width);
      if (!faces.length) {
        showResult("warn", "No face found: face the camera.");
      } else {
        const state = faces.every((f) => f.state === "ok") ? "ok" : "warn";
        const who = faces.map((f) => f.state === "ok" ? `Recognised: ${f.label}` : f.label).join("; ");
        showResult(state, `${who} (snapshot, no live check)`, matchDetails(answer.faces));
      }
    } catch (err) {
      showResult("error", `Not identified. ${plainError(err)}`);
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
  if (!cameraReady()) { showResult("error", "The camera is not available."); return; }
  await busy(["identify-snapshot", "live-check"], async () => {
    clearOverlay();
    overlay.dataset.drawn = "0";
    delete $("result").dataset.admitted;
    try {
      const challenge = await api("/v1/liveness/challenges");
      showResult("busy", "Live check: follow the instructions on the video.");
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
      showResult("error", `The live check did not finish. ${plainError(err)}`);
    }
  });
});

// The verdict in plain words: [state, message, decision, label drawn on the face].
function judge(verdict) {
  const live = verdict.liveness;
  const face = verdict.faces[0];
  if (live.decision === "attack") {
    return ["error", "This looks like a photo or a screen, not a live face.", "attack", "Not live"];
  }
  if (live.decision === "insufficient evidence") {
    return ["warn", "Not enough evidence of a live face: hold still, face the camera, and try again.",
      "insufficient evidence", "Not sure"];
  }
  if (!verdict.passed) {
    return ["warn", "The movements asked for were not seen: follow the instructions and try again.",
      "challenge failed", "Try again"];
  }
  if (!face) return ["warn", "No face found: face the camera.", "admitted", ""];
  if (!face.name) return ["warn", "Live face, but not recognised.", "admitted", "Not recognised"];
  return ["ok", `Welcome, ${face.name}: live face recognised.`, "admitted", face.name];
}

function showVerdict(verdict, frameWidth) {
  const live = verdict.liveness;
  const [state, message, decision, label] = judge(verdict);
  const width = verdict.frame_size ? verdict.frame_size[0] : frameWidth;
  drawFaces(verdict.faces.map((f) => ({ box: f.box, label, state })), width);
  const seen = live.evidence.challenge ? live.evidence.challenge.observed.join(", ") || "nothing" : "not judged";
  const details = [`liveness: ${live.decision}${live.score === null ? "" : ` (score ${live.score.toFixed(2)})`}`,
    `reason: ${live.reason}`, `asked: ${verdict.actions.join(", ")}; seen: ${seen}`, matchDetails(verdict.faces)];
  showResult(state, message, details.filter(Boolean).join("\n"), decision);
  $("result").dataset.admitted = String(verdict.admitted);
}

// --- people ----------------------------------------------------------------------------------------
const thumbnails = new Map(); // face id → object URL (a face's thumbnail never changes)

function forgetThumbnails(faceId = null) {
  for (const [id, url] of thumbnails) {
    if (faceId === null || id === faceId) { URL.revokeObjectURL(url); thumbnails.delete(id); }
  }
}

async function thumbnailUrl(faceId) {
  if (!thumbnails.has(faceId)) thumbnails.set(faceId, URL.createObjectURL(await api(`/v1/faces/${faceId}/thumbnail`, { method: "GET", blob: true })));
  return thumbnails.get(faceId);
}

const personPath = (name) => `/v1/people/${encodeURIComponent(name)}`;

function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

// Show who is enrolled; `state` and `note` say how the change just made went (else a hint is shown).
async function refreshPeople(state = "idle", note = "") {
  const list = $("people");
  if (!apiKey()) { list.replaceChildren(); setStatus("people-status", "idle", ""); return; }
  try {
    const people = await api("/v1/people", { method: "GET" });
    const hint = !people.length ? "No one is enrolled yet." : (isAdmin() ? "" : "Pictures and changes need an admin key.");
    setStatus("people-status", note ? state : "idle", note || hint);
    list.replaceChildren(...people.map(personItem));
    if (isAdmin()) await Promise.all(people.map((p, i) => showFaces(p, list.children[i])));
  } catch (err) {
    setStatus("people-status", "error", plainError(err));
  }
}

function personItem(person) {
  const li = document.createElement("li");
  li.className = "person";
  li.dataset.name = person.name;
  const head = document.createElement("div");
  head.className = "person-head";
  const name = document.createElement("strong");
  name.className = "person-name";
  name.textContent = person.name;
  const count = document.createElement("span");
  count.className = "person-count";
  count.textContent = plural(person.faces, "face");
  head.append(name, count);
  if (isAdmin()) {
    const actions = document.createElement("span");
    actions.className = "person-actions";
    actions.append(button("Rename", "quiet rename", () => startRename(li, person)),
      button("Remove", "danger remove", () => removePerson(person)));
    head.append(actions);
  }
  const faces = document.createElement("div");
  faces.className = "faces";
  li.append(head, faces);
  return li;
}

async function showFaces(person, li) {
  const detail = await api(personPath(person.name), { method: "GET" });
  const figures = await Promise.all(detail.stored_faces.map(async (face, i) => {
    const figure = document.createElement("figure");
    figure.className = "face";
    figure.dataset.faceId = String(face.id);
    if (face.thumbnail) {
      const img = document.createElement("img");
      img.alt = `${person.name}, face ${i + 1}`;
      img.width = 64;
      img.height = 64;
      img.src = await thumbnailUrl(face.id);
      figure.append(img);
    } else { // enrolled before thumbnails were kept
      const none = document.createElement("span");
      none.className = "placeholder";
      none.title = "No picture was kept for this face";
      none.textContent = "?";
      figure.append(none);
    }
    figure.append(button("×", "remove-face", () => removeFace(person, face.id, detail.stored_faces.length)));
    figure.lastChild.title = figure.lastChild.ariaLabel = `Remove this face of ${person.name}`;
    return figure;
  }));
  li.querySelector(".faces").replaceChildren(...figures);
}

function startRename(li, person) {
  const form = document.createElement("form");
  form.className = "rename-form";
  const input = document.createElement("input");
  input.value = person.name;
  input.maxLength = 200;
  input.required = true;
  input.ariaLabel = `New name for ${person.name}`;
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "Save";
  form.append(input, save, button("Cancel", "quiet", () => form.replaceWith(head)));
  const head = li.querySelector(".person-head");
  head.replaceWith(form);
  input.focus();
  input.select();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name || name === person.name) { form.replaceWith(head); return; }
    try {
      await api(personPath(person.name), { method: "PATCH", json: { new_name: name } });
      refreshPeople("ok", `Renamed ${person.name} to ${name}.`);
    } catch (err) {
      setStatus("people-status", "error", `${person.name} was not renamed. ${plainError(err)}`);
    }
  });
}

async function removePerson(person) {
  if (!window.confirm(`Remove ${person.name} and their ${plural(person.faces, "face")}? This cannot be undone.`)) return;
  try {
    await api(personPath(person.name), { method: "DELETE" });
    refreshPeople("ok", `Removed ${person.name}.`);
  } catch (err) {
    refreshPeople("error", `${person.name} was not removed. ${plainError(err)}`);
  }
}

async function removeFace(person, faceId, faces) {
  const question = faces === 1 ? `This is the only face of ${person.name}: removing it removes ${person.name}. Continue?`
    : `Remove this face of ${person.name}? This cannot be undone.`;
  if (!window.confirm(question)) return;
  try {
    const answer = await api(`/v1/faces/${faceId}`, { method: "DELETE" });
    forgetThumbnails(faceId);
    refreshPeople("ok", answer.faces_left ? `Removed a face of ${person.name} (${plural(answer.faces_left, "face")} left).`
      : `Removed ${person.name}'s last face, and ${person.name}.`);
  } catch (err) {
    refreshPeople("error", `The face was not removed. ${plainError(err)}`);
  }
}

$("people-refresh").addEventListener("click", () => refreshPeople());

startCamera();
checkKey();
