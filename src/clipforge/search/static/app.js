// The search page: text, image (drop or pick) and "more like this" searches against /search.
// Plain browser JavaScript, no build step and no external resources.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("search-form");
const queryInput = $("query");
const indexField = $("index-field");
const indexSelect = $("index-select");
const kInput = $("k");
const dedupInput = $("dedup");
const dropZone = $("drop-zone");
const fileInput = $("image-file");
const statusLine = $("status");
const results = $("results");

let maxK = 1000;
let searchSerial = 0; // answers to superseded searches are dropped

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function currentIndex() {
  return indexSelect.value || null;
}

function commonFields() {
  const k = Math.min(Math.max(parseInt(kInput.value, 10) || 1, 1), maxK);
  const fields = { k, dedup: dedupInput.checked };
  const index = currentIndex();
  if (index) fields.index = index;
  return fields;
}

async function loadIndices() {
  try {
    const response = await fetch("/indices");
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    indexSelect.replaceChildren(
      ...body.indices.map((info) => {
        const option = document.createElement("option");
        option.value = info.name;
        option.textContent = `${info.name} (${info.size} items)`;
        return option;
      }),
    );
    indexField.hidden = body.indices.length < 2;
    maxK = body.max_k;
    kInput.max = String(maxK);
  } catch (err) {
    setStatus(`Cannot list the indices: ${err.message}`, true);
  }
}

// POST /search with a JSON body or a FormData upload; renders the answer or its error.
async function runSearch(body, description) {
  const serial = ++searchSerial;
  setStatus(`Searching ${description}…`);
  const isForm = body instanceof FormData;
  let response;
  let answer;
  try {
    response = await fetch("/search", {
      method: "POST",
      headers: isForm ? {} : { "Content-Type": "application/json" },
      body: isForm ? body : JSON.stringify(body),
    });
    answer = await response.json();
  } catch (err) {
    if (serial === searchSerial) setStatus(`Search failed: ${err.message}`, true);
    return;
  }
  if (serial !== searchSerial) return;
  if (!response.ok) {
    setStatus(`Search failed (${response.status}): ${answer.error}`, true);
    return;
  }
  render(answer, description);
}

function render(answer, description) {
  const index = answer.query.index;
  results.replaceChildren(...answer.results.map((item) => resultCard(item, index)));
  results.dataset.queryKind = answer.query.kind;
  const warnings = answer.warnings.length ? ` (${answer.warnings.join("; ")})` : "";
  setStatus(`${answer.results.length} results for ${description}${warnings}`);
}

function resultCard(item, index) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "result";
  button.dataset.id = String(item.id);
  const caption = item.caption || item.key || `item ${item.id}`;
  button.title = `Search for images like this one (#${item.id})`;
  button.setAttribute("aria-label", `${caption}, score ${item.score.toFixed(3)}: find similar`);

  const img = document.createElement("img");
  img.src = `/images/${item.id}?index=${encodeURIComponent(index)}`;
  img.alt = caption;
  img.loading = "lazy";
  img.decoding = "async";

  const text = document.createElement("span");
  text.className = "caption";
  text.textContent = caption;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = `#${item.id} · ${item.score.toFixed(3)}`;

  button.append(img, text, score);
  button.addEventListener("click", () => {
    runSearch({ ...commonFields(), id: item.id }, `images like #${item.id}`);
  });
  li.append(button);
  return li;
}

function searchByFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image`, true);
    return;
  }
  const data = new FormData();
  for (const [name, value] of Object.entries(commonFields())) data.append(name, String(value));
  data.append("image", file, file.name);
  runSearch(data, `image ${file.name}`);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = queryInput.value.trim();
  if (!text) {
    setStatus("Type something to search for, or drop an image.", true);
    queryInput.focus();
    return;
  }
  runSearch({ ...commonFields(), text }, `“${text}”`);
});

fileInput.addEventListener("change", () => {
  searchByFile(fileInput.files[0]);
  fileInput.value = "";
});

for (const name of ["dragenter", "dragover"]) {
  dropZone.addEventListener(name, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
}
for (const name of ["dragleave", "drop"]) {
  dropZone.addEventListener(name, () => dropZone.classList.remove("dragging"));
}
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  searchByFile(event.dataTransfer.files[0]);
});
dropZone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    fileInput.click();
  }
});

loadIndices();
