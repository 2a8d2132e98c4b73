"use strict";
let token = sessionStorage.getItem("vid2dcm-token") || "";
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, {...options,
    headers: {...(options.headers || {}), Authorization: "Bearer " + token}});
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) {}
    throw new Error(response.status + ": " + detail);
  }
  return response;
}

async function signIn() {
  token = $("token").value.trim() || token;
  try {
    await api("/jobs");
    sessionStorage.setItem("vid2dcm-token", token);
    $("signin").hidden = true; $("app").hidden = false;
    loadWorklist(); refreshJobs(); setInterval(refreshJobs, 2000);
  } catch (e) { $("signin-error").textContent = "Sign-in failed (" + e.message + ")"; }
}

async function loadWorklist() {
  try {
    const entries = await (await api("/worklist?date=today")).json();
    for (const e of entries) {
      const option = document.createElement("option");
      option.value = e.accession_number;
      option.textContent = `${e.scheduled_time.slice(0, 4)} ${e.patient_name} (${e.patient_id}) — ` +
        `${e.requested_procedure_description || e.modality}`;
      $("order").appendChild(option);
    }
  } catch (e) { /* no worklist configured: typing the details is the way */ }
}

const CHUNK = 8 * 1024 * 1024;

function tusRequest(method, url, headers, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.setRequestHeader("Tus-Resumable", "1.0.0");
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300) ? resolve(xhr)
      : reject(new Error(xhr.status + ": " + (xhr.responseText || "").slice(0, 200)));
    xhr.onerror = () => reject(new Error("network error"));
    xhr.send(body);
  });
}

async function upload(file) {
  // tus 1.0: the upload survives a dropped connection; each chunk resumes where the server is.
  const row = document.createElement("div");
  row.textContent = file.name + " ";
  const bar = document.createElement("progress"); bar.max = 1; bar.value = 0;
  row.appendChild(bar); $("uploads").appendChild(row);
  const meta = "filename " + btoa(unescape(encodeURIComponent(file.name))) +
               ",filetype " + btoa(file.type || "application/octet-stream");
  const created = await tusRequest("POST", "/files", {"Upload-Length": String(file.size),
                                                       "Upload-Metadata": meta}, null);
  const url = created.getResponseHeader("Location");
  const id = url.replace(/\/$/, "").split("/").pop();
  let offset = 0, failures = 0;
  while (offset < file.size) {
    try {
      const part = file.slice(offset, offset + CHUNK);
      const answer = await tusRequest("PATCH", "/files/" + id,
        {"Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream"},
        part, (sent) => { bar.value = (offset + sent) / file.size; });
      offset = Number(answer.getResponseHeader("Upload-Offset"));
      failures = 0;
    } catch (e) {
      if (++failures > 5) throw e;
      await new Promise((r) => setTimeout(r, 1000 * failures));
      const head = await tusRequest("HEAD", "/files/" + id, {}, null);
      offset = Number(head.getResponseHeader("Upload-Offset"));
    }
  }
  bar.value = 1;
  return {id};
}

async function submit(files) {
  $("app-error").textContent = "";
  for (const file of files) {
    try {
      const uploaded = await upload(file);
      const body = {upload_id: uploaded.id, sop: $("procedure").value, metadata: {}};
      if ($("order").value) body.accession = $("order").value;
      if ($("patient-name").value) body.metadata.patient_name = $("patient-name").value;
      if ($("patient-id").value) body.metadata.patient_id = $("patient-id").value;
      await api("/jobs", {method: "POST", headers: {"Content-Type": "application/json"},
                          body: JSON.stringify(body)});
      refreshJobs();
    } catch (e) { $("app-error").textContent = file.name + ": " + e.message; }
  }
}

async function refreshJobs() {
  try {
    const jobs = await (await api("/jobs")).json();
    const rows = jobs.map((j) => `<tr><td>${j.id.slice(0, 8)}</td><td>${j.status}` +
      `${j.error ? ' <span class="error">' + j.error.replace(/</g, "&lt;") + "</span>" : ""}</td>` +
      `<td><progress max="1" value="${j.progress}"></progress></td><td>` +
      (j.status === "done" ? `<button data-preview="${j.id}">Play</button>` :
       j.status === "failed" ? `<button data-retry="${j.id}">Retry</button>` : "") + "</td></tr>");
    $("jobs").innerHTML = rows.join("");
  } catch (e) { $("app-error").textContent = e.message; }
}

async function preview(jobId) {
  const blob = await (await api(`/jobs/${jobId}/files/0/video`)).blob();
  const video = $("preview");
  video.src = URL.createObjectURL(blob); video.hidden = false; video.play().catch(() => {});
}

$("signin-button").onclick = signIn;
$("files").onchange = (e) => submit([...e.target.files]);
$("drop").ondragover = (e) => { e.preventDefault(); $("drop").classList.add("over"); };
$("drop").ondragleave = () => $("drop").classList.remove("over");
$("drop").ondrop = (e) => { e.preventDefault(); $("drop").classList.remove("over");
                            submit([...e.dataTransfer.files]); };
$("jobs").onclick = (e) => {
  if (e.target.dataset.preview) preview(e.target.dataset.preview);
  if (e.target.dataset.retry) api(`/jobs/${e.target.dataset.retry}/retry`, {method: "POST"})
    .then(refreshJobs).catch((err) => { $("app-error").textContent = err.message; });
};
if (token) signIn();
