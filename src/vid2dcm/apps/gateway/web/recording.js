"use strict";
// Live recording on the staff page (issue 13): start for the confirmed patient, take stills,
// stop (the recording becomes a job in "Videos sent"), and a live status line. Loaded after
// app.js (classic scripts share its and common.js's globals: $, api, postJson, patient, page,
// refreshJobs). It also lists every recording the user may see, phones' live streams too. The
// sources are names the gateway offers (GET /recordings/sources), never addresses.

let recordingId = null;
let recordingTimer = null;

async function loadSources() {
  let names = [];
  try { names = await (await api("/recordings/sources")).json(); } catch (e) { return; }
  const box = $("record-sources");
  for (const old of box.querySelectorAll("label")) old.remove();
  for (const name of names) {
    const label = document.createElement("label");
    label.className = "check";
    const input = document.createElement("input");
    input.type = "checkbox"; input.value = name; input.checked = true;
    label.append(input, document.createTextNode(" " + name));
    box.append(label);
  }
  $("recording").hidden = names.length === 0;
}

function recordingButtons(active) {
  $("record-start").disabled = active;
  $("record-stop").disabled = !active;
  $("record-snapshot").disabled = !active;
  $("change").disabled = active;  // the recording is for the confirmed patient: stop first
}

function describe(state) {
  const mb = (state.bytes / 1e6).toFixed(1);
  let text = `${state.state}: ${state.duration_s.toFixed(0)} s, ${state.frames} frames, ` +
             `${mb} MB, ${state.snapshots} stills`;
  if (state.reconnects) text += `, ${state.reconnects} reconnects`;
  const troubled = state.sources.filter((s) => s.status !== "recording");
  if (state.state === "recording" && troubled.length) {
    text += " — " + troubled.map((s) => `${s.name}: ${s.status}`).join(", ");
  }
  if (state.stop_reason && state.stop_reason !== "stopped") text += ` (${state.stop_reason})`;
  return text;
}

async function pollRecording() {
  if (!recordingId) return;
  try {
    const state = await (await api(`/recordings/${recordingId}`)).json();
    $("record-state").textContent = describe(state);
  } catch (e) { $("record-state").textContent = e.message; }
}

async function startRecording() {
  $("app-error").textContent = "";
  if (!patient) { $("app-error").textContent = "Confirm the patient first."; return; }
  const sources = [...$("record-sources").querySelectorAll("input:checked")].map((i) => i.value);
  if (!sources.length) { $("app-error").textContent = "Choose at least one source."; return; }
  recordingButtons(true);
  try {
    const created = await (await postJson("/recordings", {sources, sop: $("procedure").value,
                                                          ...patient.body})).json();
    recordingId = created.id;
    $("record-state").textContent = "recording: starting";
    recordingTimer = setInterval(pollRecording, 1000);
  } catch (e) {
    recordingButtons(false);
    $("app-error").textContent = e.message;
  }
}

async function snapshotRecording() {
  try {
    await api(`/recordings/${recordingId}/snapshot`, {method: "POST"});
    pollRecording();
  } catch (e) { $("app-error").textContent = e.message; }
}

async function stopRecording() {
  $("record-stop").disabled = true; $("record-snapshot").disabled = true;
  $("record-state").textContent = "stopping…";
  try {
    await postJson(`/recordings/${recordingId}/stop`, {});
    clearInterval(recordingTimer);
    await pollRecording();
    recordingId = null;
    recordingButtons(false);
    refreshJobs();
  } catch (e) {
    $("app-error").textContent = e.message;
    $("record-stop").disabled = false;
  }
}

// ---- every recording this user may see: room cameras and phones streaming live (WebRTC) ----

let recordingsTimer = null;

async function refreshRecordings() {
  let all = [];
  try { all = await (await api("/recordings")).json(); } catch (e) { return; }
  const list = $("recordings");
  list.replaceChildren();
  for (const r of all) {
    const item = document.createElement("li");
    item.dataset.recording = r.id; item.dataset.state = r.state;
    const names = r.sources.map((s) => s.name === "webrtc" ? "phone (live)" : s.name);
    let text = `${names.join(", ")} · ${r.owner} · ${describe(r)}`;
    if (r.mpps !== "off") text += ` · procedure step ${r.mpps}`;
    const kept = r.sources.map((s) => s.bitstream).filter(Boolean);
    if (kept.length) text += ` · ${kept[0].split(" (")[0]}`;
    item.textContent = text;
    list.append(item);
  }
  $("live-recordings").hidden = all.length === 0;
}

{
  // follow the page's sign-in (app.js set these first; classic scripts share them)
  const started = page.started, ended = page.ended;
  page.started = () => {
    started(); refreshRecordings();
    clearInterval(recordingsTimer); recordingsTimer = setInterval(refreshRecordings, 3000);
  };
  page.ended = () => { ended(); clearInterval(recordingsTimer); };
}

document.addEventListener("DOMContentLoaded", () => {
  $("record-start").addEventListener("click", startRecording);
  $("record-stop").addEventListener("click", stopRecording);
  $("record-snapshot").addEventListener("click", snapshotRecording);
  $("confirm").addEventListener("click", loadSources);
});
