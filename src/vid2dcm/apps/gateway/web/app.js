"use strict";
// The staff page: sign in, pick and confirm the patient, drop videos, follow each job.
// No inline script (the Content-Security-Policy forbids it); the DOM is built with
// textContent only, never from HTML strings. The session is an HttpOnly cookie.

// Sign-in and the patient step come from common.js (loaded first); this page adds the
// uploads and the job list.
const CHUNK = 8 * 1024 * 1024;
const mine = new Map();   // job id -> {patient, file, procedure} for jobs made on this page
let timer = null;
let research = false;     // a research destination is configured (reviewers and admins)

// de-identified exports (issue 16) are for reviewers and admins; the server refuses others
const exporter = () => me && (me.role === "reviewer" || me.role === "admin");

page.started = async () => {
  research = false;
  if (exporter()) {
    try { research = (await (await api("/export/config")).json()).research; } catch (e) { /* none */ }
  }
  refreshJobs(); timer = setInterval(refreshJobs, 3000);
};
page.ended = () => { clearInterval(timer); research = false; };
page.confirmed = () => { $("step-videos").hidden = false; $("files").focus(); };
page.changed = () => { $("step-videos").hidden = true; };

// ---- uploads (tus 1.0: a dropped connection resumes where the server got to) -------------

function tus(method, url, headers, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("Tus-Resumable", "1.0.0");
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr);
      if (xhr.status === 401) signedOut();
      let detail = "the upload was refused";
      try { detail = JSON.parse(xhr.responseText).detail || detail; } catch (e) { /* text */ }
      reject(new ApiError(String(detail)));
    };
    xhr.onerror = () => reject(new ApiError("the network dropped"));
    xhr.send(body);
  });
}

async function upload(file, bar) {
  const meta = "filename " + btoa(unescape(encodeURIComponent(file.name))) +
               ",filetype " + btoa(file.type || "application/octet-stream");
  const created = await tus("POST", "/files", {"Upload-Length": String(file.size),
                                               "Upload-Metadata": meta}, null);
  const id = created.getResponseHeader("Location").replace(/\/$/, "").split("/").pop();
  let offset = 0, failures = 0;
  while (offset < file.size) {
    try {
      const answer = await tus("PATCH", "/files/" + id,
        {"Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream"},
        file.slice(offset, offset + CHUNK), (sent) => { bar.value = (offset + sent) / file.size; });
      offset = Number(answer.getResponseHeader("Upload-Offset"));
      failures = 0;
    } catch (e) {
      if (++failures > 5) throw e;
      await new Promise((r) => setTimeout(r, 1000 * failures));
      offset = Number((await tus("HEAD", "/files/" + id, {}, null))
        .getResponseHeader("Upload-Offset"));
    }
  }
  bar.value = 1;
  return id;
}

async function submit(files) {
  $("app-error").textContent = "";
  if (!patient) { $("app-error").textContent = "Confirm the patient first."; return; }
  for (const file of files) {
    const row = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = `Uploading ${file.name}`;
    const bar = document.createElement("progress");
    bar.max = 1; bar.value = 0;
    bar.setAttribute("aria-label", `Upload of ${file.name}`);
    row.append(label, bar);
    $("uploads").append(row);
    try {
      const uploadId = await upload(file, bar);
      const procedure = $("procedure");
      const body = {upload_id: uploadId, sop: procedure.value, ...patient.body};
      const job = await (await postJson("/jobs", body)).json();
      mine.set(job.id, {patient: patient.name, file: file.name,
                        procedure: procedure.options[procedure.selectedIndex].text});
      row.remove();
      refreshJobs();
    } catch (e) {
      label.textContent = `${file.name}: ${e.message}`;
      label.className = "error";
      bar.remove();
    }
  }
}

// ---- jobs --------------------------------------------------------------------------------

const EXPORT_TEXT = {preparing: "de-identifying", sending: "sending", sent: "stored",
                     failed: "failed"};

function exportState(exported) {
  // the newest research export of the job: its state on the card (no patient data in it)
  const last = exported[exported.length - 1];
  const line = document.createElement("p");
  line.className = `state export-${last.state}`;
  line.setAttribute("data-testid", "export-state");
  line.setAttribute("role", "status");
  line.dataset.state = last.state;
  let text = `Research copy ${EXPORT_TEXT[last.state] || last.state} (${last.destination})`;
  if (last.state === "sending" && last.error) text += `: not yet stored, ${last.error}`;
  if (last.state === "failed" && last.error) text += `: ${last.error}`;
  line.textContent = text;
  return line;
}

function jobCard(job, exported = []) {
  const known = mine.get(job.id) || {};
  const item = document.createElement("li");
  item.className = "card";
  item.setAttribute("data-testid", "job-card");
  item.dataset.state = job.status;
  item.dataset.job = job.id;
  const title = document.createElement("p");
  title.className = "name";
  title.textContent = known.patient ||
    (job.request.accession ? `Accession ${job.request.accession}` : "Patient on file");
  const facts = document.createElement("dl");
  const destinations = job.request.destinations.length ? job.request.destinations.join(", ")
    : "PACS";
  for (const [term, value] of [["Video", known.file || "—"],
                               ["Kind", known.procedure || job.request.sop],
                               ["To", destinations],
                               ["Sent", new Date(job.created * 1000).toLocaleString()]]) {
    const dt = document.createElement("dt"); dt.textContent = term;
    const dd = document.createElement("dd"); dd.textContent = value;
    facts.append(dt, dd);
  }
  const state = document.createElement("p");
  state.className = `state state-${job.status}`;
  state.setAttribute("role", "status");
  state.textContent = job.state_text;
  item.append(title, facts, state);
  if (job.status === "running") {
    const bar = document.createElement("progress");
    bar.max = 1; bar.value = job.progress;
    bar.setAttribute("aria-label", "Conversion progress");
    item.append(bar);
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  if (job.result && job.result.files.length) {
    const play = document.createElement("button");
    play.type = "button"; play.className = "secondary"; play.dataset.preview = job.id;
    play.textContent = "Play";
    actions.append(play);
  }
  if (me && me.role !== "uploader" && job.status === "held") {
    const assign = document.createElement("button");
    assign.type = "button"; assign.dataset.assign = job.id; assign.textContent = "Assign patient";
    actions.append(assign);
  }
  if (exporter() && job.status === "done" && job.result && job.result.files.length) {
    const zip = document.createElement("button");
    zip.type = "button"; zip.className = "secondary"; zip.dataset.exportZip = job.id;
    zip.setAttribute("data-testid", "export-zip");
    zip.textContent = "Export de-identified";
    actions.append(zip);
    if (research) {
      const send = document.createElement("button");
      send.type = "button"; send.className = "secondary"; send.dataset.exportSend = job.id;
      send.setAttribute("data-testid", "export-research");
      send.textContent = "Send to research";
      const last = exported[exported.length - 1];
      send.disabled = Boolean(last && (last.state === "preparing" || last.state === "sending"));
      actions.append(send);
    }
  }
  if (me && me.role === "admin" && job.status === "failed") {
    const retry = document.createElement("button");
    retry.type = "button"; retry.dataset.retry = job.id; retry.textContent = "Try again";
    actions.append(retry);
  }
  if (actions.childElementCount) item.append(actions);
  if (exported.length) item.append(exportState(exported));
  return item;
}

async function exportsOf(jobs) {
  // GET /jobs/{id}/exports of each finished job, for reviewers and admins only
  const exported = new Map();
  if (!exporter()) return exported;
  await Promise.all(jobs.filter((j) => j.status === "done").map(async (j) => {
    try { exported.set(j.id, await (await api(`/jobs/${j.id}/exports`)).json()); }
    catch (e) { /* shown on the next refresh */ }
  }));
  return exported;
}

async function exportZip(jobId, button) {
  // POST /jobs/{id}/export answers with the ZIP; saved through a temporary link
  button.disabled = true;
  const label = button.textContent;
  button.textContent = "De-identifying…";
  try {
    const blob = await (await api(`/jobs/${jobId}/export`, {method: "POST"})).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `deidentified-${jobId}.zip`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  } finally { button.disabled = false; button.textContent = label; }
}

async function refreshJobs() {
  try {
    const jobs = await (await api("/jobs")).json();
    const exported = await exportsOf(jobs);
    $("jobs").replaceChildren(...jobs.map((j) => jobCard(j, exported.get(j.id) || [])));
    $("jobs-empty").hidden = jobs.length > 0;
  } catch (e) { if (me) $("app-error").textContent = e.message; }
}

async function preview(jobId) {
  const blob = await (await api(`/jobs/${jobId}/files/0/video`)).blob();
  const video = $("preview");
  video.src = URL.createObjectURL(blob); video.hidden = false;
  video.play().catch(() => { /* the user presses play */ });
}

function openAssign(jobId) {
  const select = $("assign-order");
  select.replaceChildren();
  for (const order of orders) {
    const option = document.createElement("option");
    option.value = order.accession_number;
    option.textContent = `${personName(order.patient_name)} · ID ${order.patient_id} · ` +
      `accession ${order.accession_number}`;
    select.append(option);
  }
  $("assign-error").textContent = orders.length ? "" : "No worklist order today to assign.";
  $("assign-submit").disabled = !orders.length;
  $("assign-dialog").dataset.job = jobId;
  $("assign-dialog").showModal();
}

async function assign(event) {
  event.preventDefault();
  const dialog = $("assign-dialog");
  try {
    await postJson(`/jobs/${dialog.dataset.job}/assign`, {accession: $("assign-order").value});
    dialog.close();
    refreshJobs();
  } catch (e) { $("assign-error").textContent = e.message; }
}

// ---- wiring ------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  wirePeople();
  $("assign-form").addEventListener("submit", assign);
  $("assign-cancel").addEventListener("click", () => $("assign-dialog").close());
  $("files").addEventListener("change", (e) => { submit([...e.target.files]); e.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over"); submit([...e.dataTransfer.files]);
  });
  $("jobs").addEventListener("click", (e) => {
    const target = e.target.closest("button");
    if (!target) return;
    if (target.dataset.preview) {
      preview(target.dataset.preview).catch((err) => { $("app-error").textContent = err.message; });
    }
    if (target.dataset.assign) openAssign(target.dataset.assign);
    if (target.dataset.exportZip) {
      exportZip(target.dataset.exportZip, target)
        .catch((err) => { $("app-error").textContent = err.message; });
    }
    if (target.dataset.exportSend) {
      target.disabled = true;
      api(`/jobs/${target.dataset.exportSend}/export/send`, {method: "POST"}).then(refreshJobs)
        .catch((err) => { $("app-error").textContent = err.message; target.disabled = false; });
    }
    if (target.dataset.retry) {
      api(`/jobs/${target.dataset.retry}/retry`, {method: "POST"}).then(refreshJobs)
        .catch((err) => { $("app-error").textContent = err.message; });
    }
  });
  const signOn = new URLSearchParams(location.search).get("signon");
  if (signOn) {
    $("signin-error").textContent = signOn;
    history.replaceState(null, "", "/");
  }
  api("/auth/config").then((r) => r.json())
    .then((c) => { $("sign-on").hidden = !c.sign_on; }).catch(() => { /* local only */ });
  try {  // already signed in (the cookie survives a reload, and hospital sign-on lands here)
    me = await (await api("/auth/me")).json();
    start();
  } catch (e) { me = null; if (!signOn) $("signin-error").textContent = ""; }
});
