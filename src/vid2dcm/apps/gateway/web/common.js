"use strict";
// What the staff page (app.js) and the capture page (capture.js) share: the API call with its
// errors, sign-in and sign-out, and picking and confirming the patient (worklist cards, the
// patient card, typed fields where the page has them, the patient search). Plain script, no
// module: it is loaded first (defer keeps the order) and each page fills `page` with its own
// steps. No inline script (CSP); the DOM is built with textContent only.

const $ = (id) => document.getElementById(id);
let me = null;            // {name, role}
let orders = [];          // today's worklist
let chosen = null;        // the worklist order picked, or null
let patient = null;       // the confirmed patient: {name, id, ..., body: fields for the API}

const page = {
  started: () => {},      // after sign-in (or a session still open)
  ended: () => {},        // after sign-out or an expired session
  confirmed: () => {},    // the patient was confirmed: show the next step
  changing: () => true,   // may the patient be changed now? (false while recording)
  changed: () => {},      // the patient was cleared: hide the next step
};

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
  loadWorklist();
  page.started();
}

function signedOut() {
  me = null;
  page.ended();
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
  search();
}

function search() {
  // the patient search (typed, or filled by a wristband scan) narrows the worklist cards;
  // it never picks a patient: a card must still be chosen and confirmed
  const box = $("patient-search");
  const q = box ? box.value.trim().toLowerCase() : "";
  let shown = 0;
  for (const b of document.querySelectorAll(".order")) {
    const order = orders.find((o) => o.accession_number === b.dataset.accession);
    const hit = !q || !order || [order.patient_id, order.accession_number,
      personName(order.patient_name)].some((v) => String(v || "").toLowerCase().includes(q));
    b.parentElement.hidden = !hit;
    if (hit) shown += 1;
  }
  const none = $("search-empty");
  if (none) none.hidden = !q || shown > 0;
}

function typedFields() {
  if (!$("patient-id")) return {patient_id: "", patient_name: "", birth: ""};
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
  for (const id of ["family", "given", "patient-id", "birth"]) if ($(id)) $(id).value = "";
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
  if ($("patient-error")) $("patient-error").textContent = "";
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
  page.confirmed();
}

function changePatient() {
  if (!page.changing()) return;
  patient = null;
  $("choose").hidden = false; $("confirm").hidden = false; $("change").hidden = true;
  page.changed();
  choose(null);
}

function wirePeople() {
  // the listeners both pages share (each page adds its own after this)
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("worklist").addEventListener("click", (e) => {
    const button = e.target.closest(".order");
    if (button) choose(button.dataset.accession);
  });
  for (const id of ["family", "given", "patient-id", "birth"]) {
    if ($(id)) $(id).addEventListener("input", typed);
  }
  $("unknown").addEventListener("change", typed);
  $("confirm").addEventListener("click", confirmPatient);
  $("change").addEventListener("click", changePatient);
  if ($("patient-search")) $("patient-search").addEventListener("input", search);
}

async function resumeSession() {
  // a session cookie still valid: straight to the page
  try {
    me = await (await api("/auth/me")).json();
    start();
  } catch (e) { me = null; }
}
