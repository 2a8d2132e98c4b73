"use strict";
// The staff page: sign in, pick and confirm the patient, drop videos, follow each job.
// No inline script (the Content-Security-Policy forbids it); the DOM is built with
// textContent only, never from HTML strings. The session is an HttpOnly cookie.

const $ = (id) => document.getElementById(id);
const CHUNK = 8 * 1024 * 1024;
let me = null;            // {name, role}
let orders = [];          // today's worklist
let chosen = null;        // the worklist order picked, or null
let patient = null;       // the confirmed patient: {label, body fields}
const mine = new Map();   // job id -> {patient, file, procedure} for jobs made on this page
let timer = null;

class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {credentials: "same-origin", ...options});
  } catch (e) {
    throw new ApiError("The gateway did not answer. Check the network, then try again.");
  }
  if (response.status === 401 && me && !path.startsWith("/auth/")) signedOut();
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new ApiError(String(detail));
  }
  return response;
}

function postJson(path, body) {
  return api(path, {method: "POST", headers: {"Content-Type": "application/json"},
                    body: JSON.stringify(body)});
}

// ---- people ------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    me = await (await postJson("/auth/login", {username: $("username").value.trim(),
                                               password: $("password").value})).json();
    $("password").value = "";
    start();
  } catch (e) { $("signin-error").textContent = e.message; }
}

function start() {
  $("signin").hidden = true; $("app").hidden = false; $("who").hidden = false;
  $("who-name").textContent = `${me.name} (${me.role})`;
  loadWorklist(); refreshJobs();
  timer = setInterval(refreshJobs, 3000);
}

function signedOut() {
  me = null; clearInterval(timer);
  $("app").hidden = true; $("who").hidden = true; $("signin").hidden = false;
  $("signin-error").textContent = "Your session has ended. Sign in again.";
}

async function signOut() {
  try { await api("/auth/logout", {method: "POST"}); } catch (e) { /* gone already */ }
  signedOut();
  $("signin-error").textContent = "";
}

// ---- patient -----------------------------------------------------------------------------

function personName(value) {
  // DICOM PN "FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX" -> "FAMILY, GIVEN MIDDLE"
  const [family = "", given = "", middle = ""] = String(value || "").split("=")[0].split("^");
  const rest = [given, middle].filter(Boolean).join(" ");
  return rest ? `${family}, ${rest}` : family || "(no name)";
}

function day(value) {
  const v = String(value || "");
  return /^\d{8}$/.test(v) ? `${v.slice(0, 4)}-${v.slice(4, 6)}-${v.slice(6)}` : v || "—";
}

function clock(value) {
  const v = String(value || "");
  return /^\d{4}/.test(v) ? `${v.slice(0, 2)}:${v.slice(2, 4)}` : "";
}

async function loadWorklist() {
  try {
    orders = await (await api("/worklist?date=today")).json();
  } catch (e) { orders = []; }
  const list = $("worklist");
  list.replaceChildren();
  $("worklist-empty").hidden = orders.length > 0;
  for (const order of orders) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button"; button.className = "order";
    button.dataset.accession = order.accession_number;
    button.setAttribute("aria-pressed", "false");
    const name = document.createElement("span");
    name.className = "name"; name.textContent = personName(order.patient_name);
    const line = document.createElement("span");
    line.textContent = ` · ID ${order.patient_id} · born ${day(order.patient_birth_date)}`;
    const what = document.createElement("span");
    what.className = "hint";
    what.textContent = ` · ${clock(order.scheduled_time)} ${order.requested_procedure_description
      || order.modality} · accession ${order.accession_number}`;
    button.append(name, line, what);
    item.append(button);
    list.append(item);
  }
}

function typedFields() {
  const family = $("family").value.trim(), given = $("given").value.trim();
  return {patient_id: $("patient-id").value.trim(),
          patient_name: given ? `${family}^${given}` : family,
          birth: $("birth").value};
}

function choose(accession) {
  chosen = orders.find((o) => o.accession_number === accession) || null;
  for (const b of document.querySelectorAll(".order")) {
    b.setAttribute("aria-pressed", String(b.dataset.accession === accession));
  }
  for (const id of ["family", "given", "patient-id", "birth"]) $(id).value = "";
  $("unknown").checked = false;
  showCard();
}

function typed() {
  if (chosen) {
    chosen = null;
    for (const b of document.querySelectorAll(".order")) b.setAttribute("aria-pressed", "false");
  }
  showCard();
}

function showCard() {
  $("patient-error").textContent = "";
  const t = typedFields();
  let card = null;
  if (chosen) {
    card = {name: personName(chosen.patient_name), id: chosen.patient_id,
            birth: day(chosen.patient_birth_date), accession: chosen.accession_number,
            procedure: chosen.requested_procedure_description || chosen.modality,
            body: {accession: chosen.accession_number}};
  } else if ($("unknown").checked) {
    card = {name: "Patient not known yet", id: "—", birth: "—", accession: "—",
            procedure: "—", body: {unidentified: true}};
  } else if (t.patient_id && t.patient_name) {
    const metadata = {patient_id: t.patient_id, patient_name: t.patient_name};
    if (t.birth) metadata.patient_birth_date = t.birth;
    card = {name: personName(t.patient_name), id: t.patient_id, birth: t.birth || "—",
            accession: "—", procedure: "—", body: {metadata}};
  }
  $("patient-card").hidden = !card;
  $("confirm").disabled = !card;
  if (card) {
    $("card-name").textContent = card.name; $("card-id").textContent = card.id;
    $("card-birth").textContent = card.birth; $("card-accession").textContent = card.accession;
    $("card-procedure").textContent = card.procedure;
  }
  showCard.current = card;
}

function confirmPatient() {
  if (!showCard.current) return;
  patient = showCard.current;
  $("choose").hidden = true; $("confirm").hidden = true; $("change").hidden = false;
  $("step-videos").hidden = false;
  $("files").focus();
}

function changePatient() {
  patient = null;
  $("choose").hidden = false; $("confirm").hidden = false; $("change").hidden = true;
  $("step-videos").hidden = true;
  choose(null);
}

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

function jobCard(job) {
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
  if (me && me.role === "admin" && job.status === "failed") {
    const retry = document.createElement("button");
    retry.type = "button"; retry.dataset.retry = job.id; retry.textContent = "Try again";
    actions.append(retry);
  }
  if (actions.childElementCount) item.append(actions);
  return item;
}

async function refreshJobs() {
  try {
    const jobs = await (await api("/jobs")).json();
    $("jobs").replaceChildren(...jobs.map(jobCard));
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
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("worklist").addEventListener("click", (e) => {
    const button = e.target.closest(".order");
    if (button) choose(button.dataset.accession);
  });
  for (const id of ["family", "given", "patient-id", "birth"]) {
    $(id).addEventListener("input", typed);
  }
  $("unknown").addEventListener("change", typed);
  $("confirm").addEventListener("click", confirmPatient);
  $("assign-form").addEventListener("submit", assign);
  $("assign-cancel").addEventListener("click", () => $("assign-dialog").close());
  $("change").addEventListener("click", changePatient);
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
