"use strict";
// The capture page (/capture): sign in, confirm the patient, record with the camera, and
// send. While recording, every MediaRecorder chunk goes straight to the gateway through tus
// (Upload-Defer-Length: the size is known only at stop), so a dropped connection loses
// nothing: the page keeps the unsent bytes and resumes from the server's offset. Nothing is
// kept in the browser after "send" (the review copy is released).
// Sign-in and the patient step come from common.js (shared with the staff page, loaded
// first); no inline script (CSP), the DOM is built with textContent.

let stream = null, recorder = null, upload = null, reviewUrl = null, kept = [];

page.ended = () => { scanStop(); forget(); };
page.confirmed = () => { scanStop(); $("step-record").hidden = false; cameraOn(); };
page.changing = () => !recorder && !live;  // never switch patient under a running recording
page.changed = () => { $("step-record").hidden = true; cameraOff(); };

function setState(state, text) {
  const el = $("capture-state");
  el.dataset.state = state;
  el.textContent = text;
}

// ---- camera ------------------------------------------------------------------------------

async function cameraOn() {
  $("capture-error").textContent = "";
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    setState("unsupported", "This browser cannot record here: use the camera app below.");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: {facingMode: {ideal: "environment"}, width: {ideal: 1280}, height: {ideal: 720}},
      audio: true});
  } catch (e) {
    setState("unsupported", "No camera (permission refused or no secure connection): " +
                            "use the camera app below.");
    return;
  }
  $("camera").srcObject = stream;
  $("camera").hidden = false; $("review").hidden = true;
  $("start").disabled = false; $("live-start").disabled = false;
  setState("ready", "Ready to record");
}

function cameraOff() {
  if (stream) for (const track of stream.getTracks()) track.stop();
  stream = null;
  $("camera").srcObject = null;
  $("start").disabled = true; $("live-start").disabled = true;
}

// ---- tus with a length known only at the end -------------------------------------------

function tus(method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("Tus-Resumable", "1.0.0");
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr);
      if (xhr.status === 401) signedOut();
      let detail = "the upload was refused";
      try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (e) { /* text */ }
      const error = new ApiError(String(detail));
      error.fatal = true;
      reject(error);
    };
    xhr.onerror = () => reject(new ApiError("the network dropped"));
    xhr.send(body);
  });
}

class LiveUpload {
  // Bytes before `base` are on the server; `pending` holds the rest, in order.
  constructor(id) {
    this.id = id; this.base = 0; this.pending = new Blob([]); this.total = 0;
    this.final = false; this.done = false; this.busy = false; this.requests = 0;
    this.retries = 0; this.waiters = [];
  }

  static async create(type) {
    const ext = type.includes("mp4") ? "mp4" : type.includes("matroska") ? "mkv" : "webm";
    const meta = "filename " + btoa(`capture.${ext}`) + ",filetype " + btoa(type || "video/webm");
    const answer = await tus("POST", "/files", {"Upload-Defer-Length": "1",
                                                "Upload-Metadata": meta}, null);
    return new LiveUpload(answer.getResponseHeader("Location").replace(/\/$/, "").split("/").pop());
  }

  add(blob) {
    this.pending = new Blob([this.pending, blob]);
    this.total += blob.size;
    this.pump();
  }

  finish() {
    this.final = true;
    this.pump();
    return new Promise((resolve, reject) => {
      if (this.done) resolve(); else this.waiters.push({resolve, reject});
    });
  }

  async pump() {
    if (this.busy || this.done) return;
    this.busy = true;
    try {
      while (!this.done && (this.pending.size > 0 || this.final)) {
        const body = this.pending;
        const headers = {"Upload-Offset": String(this.base),
                         "Content-Type": "application/offset+octet-stream"};
        const last = this.final;
        if (last) headers["Upload-Length"] = String(this.total);
        try {
          this.requests += 1;
          const answer = await tus("PATCH", "/files/" + this.id, headers, body);
          this.advance(Number(answer.getResponseHeader("Upload-Offset")));
          if (last && this.base >= this.total) this.done = true;
          if (this.retries && $("capture-state").dataset.state === "offline") {
            setState(recorder ? "recording" : "uploading",
                     recorder ? "Recording (connection back)" : "Finishing the upload");
          }
        } catch (e) {
          if (e.fatal) throw e;
          this.retries += 1;
          if (recorder) setState("offline", "Recording — offline, will catch up");
          await new Promise((r) => setTimeout(r, 500));
          try {
            this.advance(Number((await tus("HEAD", "/files/" + this.id, {}, null))
              .getResponseHeader("Upload-Offset")));
          } catch (ignored) { /* still offline: try again */ }
        }
      }
      if (this.done) for (const w of this.waiters.splice(0)) w.resolve();
    } catch (e) {
      for (const w of this.waiters.splice(0)) w.reject(e);
      $("capture-error").textContent = e.message;
    } finally {
      this.busy = false;
    }
    if (!this.done && (this.pending.size > 0 || this.final)) this.pump();
  }

  advance(offset) {
    // the server has everything up to `offset`: drop that many bytes from the pending blob
    if (Number.isFinite(offset) && offset > this.base) {
      this.pending = this.pending.slice(offset - this.base);
      this.base = offset;
    }
  }
}

// ---- recording ---------------------------------------------------------------------------

let started = 0, stopAt = 0, stats = null;

function chooseType() {
  // what the browser offers; the server transcodes as needed and never trusts the duration
  for (const t of ["video/webm;codecs=vp8,opus", "video/webm", "video/mp4;codecs=avc1,mp4a",
                   "video/mp4"]) {
    if (MediaRecorder.isTypeSupported(t)) return t;
  }
  return "";
}

async function record() {
  $("capture-error").textContent = ""; $("capture-next").hidden = true;
  if (!stream || !patient) return;
  const type = chooseType();
  try {
    upload = await LiveUpload.create(type);
  } catch (e) { $("capture-error").textContent = e.message; return; }
  kept = [];
  recorder = new MediaRecorder(stream, type ? {mimeType: type} : {});
  recorder.ondataavailable = (e) => {
    if (e.data && e.data.size) { kept.push(e.data); upload.add(e.data); }
  };
  recorder.start(1000);
  started = performance.now();
  setState("recording", "Recording");
  $("start").hidden = true; $("pause").hidden = false; $("stop").hidden = false;
  $("live-start").hidden = true; $("camera-on").hidden = true; $("fallback").hidden = true;
  $("change").disabled = true;
  stats = setInterval(showStats, 500);
}

function showStats() {
  if (!upload) return;
  const seconds = Math.round((performance.now() - started) / 1000);
  $("capture-stats").textContent = `${seconds} s · ${Math.round(upload.total / 1024)} kB recorded` +
    ` · ${Math.round(upload.base / 1024)} kB on the server`;
}

function pauseResume() {
  if (!recorder) return;
  if (recorder.state === "recording") {
    recorder.pause(); setState("paused", "Paused"); $("pause").textContent = "Resume";
  } else if (recorder.state === "paused") {
    recorder.resume(); setState("recording", "Recording"); $("pause").textContent = "Pause";
  }
}

async function stop() {
  if (!recorder) return;
  const stopped = new Promise((r) => { recorder.onstop = r; });
  recorder.stop();
  stopAt = performance.now();
  await stopped;
  recorder = null;
  clearInterval(stats);
  cameraOff();
  $("pause").hidden = true; $("stop").hidden = true;
  setState("uploading", "Finishing the upload");
  try {
    await upload.finish();
  } catch (e) { $("capture-error").textContent = e.message; setState("error", "Upload failed"); return; }
  const ms = Math.round(performance.now() - stopAt);
  $("capture-stats").textContent = `${Math.round(upload.total / 1024)} kB uploaded in ` +
    `${upload.requests} requests; complete on the server ${ms} ms after stop`;
  $("capture-stats").dataset.uploadMs = String(ms);
  $("capture-stats").dataset.requests = String(upload.requests);
  $("capture-stats").dataset.bytes = String(upload.total);
  reviewUrl = URL.createObjectURL(new Blob(kept, {type: kept.length ? kept[0].type : ""}));
  $("camera").hidden = true;
  $("review").src = reviewUrl; $("review").hidden = false;
  $("send").hidden = false; $("discard").hidden = false;
  setState("review", "Review, then send");
}

function forget() {
  // nothing recorded stays in the browser
  if (recorder && recorder.state !== "inactive") { recorder.onstop = null; recorder.stop(); }
  recorder = null;
  clearInterval(stats);
  if (reviewUrl) URL.revokeObjectURL(reviewUrl);
  reviewUrl = null; kept = [];
  $("review").removeAttribute("src"); $("review").load(); $("review").hidden = true;
  $("send").hidden = true; $("discard").hidden = true;
  $("start").hidden = false; $("change").disabled = false;
  $("live-start").hidden = false; $("camera-on").hidden = false; $("fallback").hidden = false;
  $("pause").textContent = "Pause";
  cameraOff();
}

async function send() {
  if (!upload || !upload.done) return;
  const id = upload.id;
  $("send").disabled = true;
  try {
    const body = {upload_id: id, sop: $("procedure").value, ...patient.body};
    const job = await (await postJson("/jobs", body)).json();
    upload = null;
    forget();
    setState("sent", "Sent: converting");
    follow(job.id);
  } catch (e) {
    $("capture-error").textContent = e.message;
  } finally { $("send").disabled = false; }
}

async function discard() {
  const id = upload && upload.id;
  upload = null;
  forget();
  if (id) { try { await tus("DELETE", "/files/" + id, {}, null); } catch (e) { /* gone */ } }
  setState("idle", "Discarded");
  cameraOn();
}

async function follow(jobId) {
  for (;;) {
    let job;
    try { job = await (await api(`/jobs/${jobId}`)).json(); } catch (e) { return; }
    const el = $("capture-state");
    el.dataset.job = jobId;
    if (job.status === "done") { setState("stored", job.state_text); break; }
    if (job.status === "held") {
      // converted and kept on the gateway, not sent: a reviewer must confirm the patient
      setState("held", "Held: converted, not yet sent to the PACS");
      $("capture-next").textContent = "Nothing more to do on this phone. A reviewer assigns " +
        "the patient on the staff page (Videos sent, then Assign patient); the video goes " +
        "to the PACS then.";
      $("capture-next").hidden = false;
      break;
    }
    if (job.status === "failed") { setState(job.status, job.state_text); break; }
    setState("sent", job.state_text);
    await new Promise((r) => setTimeout(r, 1000));
  }
  $("capture-state").dataset.job = jobId;
  // the camera stays off until "Camera on" (the next patient may be someone else)
}

// ---- live: WebRTC to the gateway, which records (nothing is stored on the device) ----------

let live = null;  // {pc, id, timer, last}

async function liveStart() {
  // the stream is a recording on the gateway (listed with the network cameras' recordings):
  // the confirmed patient goes with the offer, so the procedure step is IN PROGRESS while
  // it streams; H.264 is offered first (a stream the gateway can store as sent is kept)
  $("capture-error").textContent = ""; $("capture-next").hidden = true;
  if (!stream || !patient || live || recorder) return;
  const pc = new RTCPeerConnection({iceServers: []});
  for (const track of stream.getVideoTracks()) {
    const transceiver = pc.addTransceiver(track, {direction: "sendonly", streams: [stream]});
    preferH264(transceiver);
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // no trickle: the offer carries every candidate
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
  let answer;
  try {
    answer = await (await postJson("/webrtc/offer", {
      sdp: pc.localDescription.sdp, type: "offer", sop: $("procedure").value,
      ...patient.body})).json();
  } catch (e) { pc.close(); $("capture-error").textContent = e.message; return; }
  await pc.setRemoteDescription({type: answer.type, sdp: answer.sdp});
  live = {pc, id: answer.id, timer: setInterval(liveStats, 1000), last: null};
  $("capture-state").dataset.recording = answer.id;
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") setState("live", "Streaming live to the gateway");
    if (pc.connectionState === "failed") setState("offline", "Live stream lost");
  });
  setState("connecting", "Connecting");
  $("start").hidden = true; $("live-start").hidden = true; $("live-stop").hidden = false;
  $("camera-on").hidden = true; $("fallback").hidden = true;
  $("change").disabled = true;
}

function preferH264(transceiver) {
  const caps = window.RTCRtpSender && RTCRtpSender.getCapabilities &&
               RTCRtpSender.getCapabilities("video");
  if (!caps || !transceiver.setCodecPreferences) return;
  const rank = (c) => (c.mimeType.toLowerCase() === "video/h264" ? 0 : 1);
  try {
    transceiver.setCodecPreferences([...caps.codecs].sort((a, b) => rank(a) - rank(b)));
  } catch (e) { /* the browser's own order then */ }
}

async function liveStats() {
  if (!live) return;
  const report = await live.pc.getStats();
  if (!live) return;  // stopped meanwhile
  let bytes = 0, rtt = null, at = performance.now(), codecId = null;
  report.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") { bytes = s.bytesSent; codecId = s.codecId; }
    if (s.type === "remote-inbound-rtp" && s.kind === "video" && s.roundTripTime !== undefined) {
      rtt = s.roundTripTime;
    }
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined &&
        rtt === null) rtt = s.currentRoundTripTime;
  });
  const el = $("live-stats");
  const codec = codecId && report.get(codecId);
  if (codec) el.dataset.codec = `${codec.mimeType} ${codec.sdpFmtpLine || ""}`.trim();
  if (live.last) {
    const kbit = Math.round((bytes - live.last.bytes) * 8 / (at - live.last.at));
    el.dataset.kbps = String(kbit);
    el.textContent = `${kbit} kbit/s`;
  }
  if (rtt !== null) {
    el.dataset.latencyMs = String(Math.round(rtt * 500));  // one way: half the round trip
    el.textContent += ` · latency ≈ ${Math.round(rtt * 500)} ms`;
  }
  live.last = {bytes, at};
  try {  // what the gateway has recorded so far (its recording, as the recordings list shows)
    const rec = await (await api(`/recordings/${live.id}`)).json();
    if (!live) return;
    const source = rec.sources[0] || {};
    el.dataset.gatewayFrames = String(rec.frames);
    el.textContent += ` · on the gateway: ${rec.frames} frames, ${rec.duration_s.toFixed(0)} s` +
      (source.bitstream ? ` (${source.bitstream.split(" (")[0]})` : "");
  } catch (e) { /* the next tick tries again */ }
}

async function liveStop() {
  if (!live) return;
  const {pc, id, timer} = live;
  clearInterval(timer);
  live = null;
  try {
    let refused = null;
    try { await postJson(`/recordings/${id}/stop`, {}); } catch (e) { refused = e; }
    pc.close();
    // the gateway may have stopped it already (the connection was lost): follow its job
    const recording = await (await api(`/recordings/${id}`)).json();
    if (!recording.job_id) throw refused || new ApiError("the recording made no job");
    cameraOff();
    $("live-stop").hidden = true; $("live-start").hidden = false; $("start").hidden = false;
    $("camera-on").hidden = false; $("fallback").hidden = false;
    $("change").disabled = false;
    setState("sent", "Sent: converting");
    follow(recording.job_id);
  } catch (e) { pc.close(); $("capture-error").textContent = e.message; setState("error", "Live stream failed"); }
}

// ---- fallback: the phone's own camera app ------------------------------------------------

async function sendFile(file) {
  if (!file || !patient) return;
  $("capture-error").textContent = ""; $("capture-next").hidden = true;
  setState("uploading", "Uploading");
  try {
    upload = await LiveUpload.create(file.type || "video/mp4");
    upload.add(file);
    await upload.finish();
    await send();
  } catch (e) { $("capture-error").textContent = e.message; setState("error", "Upload failed"); }
}

// ---- wristband scan: fills the patient search, never picks the patient -------------------

let scanning = null;  // {stream, timer}

async function scanStart() {
  if (scanning || !navigator.mediaDevices) return;
  $("scan-state").textContent = "Hold the wristband barcode in front of the camera";
  let s;
  try {
    s = await navigator.mediaDevices.getUserMedia({video: {facingMode: {ideal: "environment"}}});
  } catch (e) {
    $("scan-state").textContent = "No camera for scanning: type the patient ID instead.";
    return;
  }
  scanning = {stream: s, timer: null};
  $("scan-video").srcObject = s;
  $("scanner").hidden = false;
  let read;
  try { read = await barcodeReader(); } catch (e) {
    scanStop();
    $("scan-state").textContent = "This browser cannot read barcodes: type the patient ID.";
    return;
  }
  const tick = async () => {
    if (!scanning) return;
    let value = null;
    try { value = await read($("scan-video")); } catch (e) { /* nothing readable yet */ }
    if (value) {
      scanStop();
      $("patient-search").value = value.trim();
      search();
      $("scan-state").textContent = "Scanned: pick the patient below and confirm.";
      return;
    }
    scanning.timer = setTimeout(tick, 250);
  };
  tick();
}

function scanStop() {
  if (!scanning) return;
  clearTimeout(scanning.timer);
  for (const track of scanning.stream.getTracks()) track.stop();
  scanning = null;
  $("scan-video").srcObject = null;
  $("scanner").hidden = true;
}

const WRISTBAND_FORMATS = ["code_128", "code_39", "qr_code", "data_matrix", "pdf417"];

async function barcodeReader() {
  // the browser's own BarcodeDetector where it has one (Android, macOS, ChromeOS), else
  // ZXing (bundled, Apache-2.0), loaded only when needed
  if ("BarcodeDetector" in window) {
    const supported = await BarcodeDetector.getSupportedFormats();
    const formats = WRISTBAND_FORMATS.filter((f) => supported.includes(f));
    if (formats.length) {
      const detector = new BarcodeDetector({formats});
      return async (video) => {
        const found = await detector.detect(video);
        return found.length ? found[0].rawValue : null;
      };
    }
  }
  if (!window.ZXing) {
    await new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/static/zxing.min.js";
      script.onload = resolve; script.onerror = reject;
      document.head.append(script);
    });
  }
  const Z = window.ZXing;
  const hints = new Map();
  hints.set(Z.DecodeHintType.POSSIBLE_FORMATS, [Z.BarcodeFormat.CODE_128, Z.BarcodeFormat.CODE_39,
    Z.BarcodeFormat.QR_CODE, Z.BarcodeFormat.DATA_MATRIX, Z.BarcodeFormat.PDF_417]);
  hints.set(Z.DecodeHintType.TRY_HARDER, true);
  const reader = new Z.MultiFormatReader();
  reader.setHints(hints);
  const canvas = document.createElement("canvas");
  return async (video) => {
    if (!video.videoWidth) return null;
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext("2d", {willReadFrequently: true}).drawImage(video, 0, 0);
    const bitmap = new Z.BinaryBitmap(new Z.HybridBinarizer(
      new Z.HTMLCanvasElementLuminanceSource(canvas)));
    try { return reader.decode(bitmap).getText(); } catch (e) { return null; }
  };
}

// ---- wiring ------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  wirePeople();
  $("scan").addEventListener("click", scanStart);
  $("scan-stop").addEventListener("click", () => {
    scanStop(); $("scan-state").textContent = "";
  });
  $("camera-on").addEventListener("click", cameraOn);
  $("start").addEventListener("click", record);
  $("pause").addEventListener("click", pauseResume);
  $("stop").addEventListener("click", stop);
  $("send").addEventListener("click", send);
  $("discard").addEventListener("click", discard);
  $("live-start").addEventListener("click", liveStart);
  $("live-stop").addEventListener("click", liveStop);
  $("native").addEventListener("change", (e) => {
    const file = e.target.files[0]; e.target.value = ""; sendFile(file);
  });
  window.addEventListener("pagehide", forget);
  await resumeSession();
});
