// /docs loads Swagger UI from a CDN. Offline (the usual case on a search box behind a firewall)
// that script never arrives and the page would stay blank; list the routes from /openapi.json
// instead, so the page still says what the API offers.
"use strict";

window.addEventListener("load", async () => {
  if (window.SwaggerUIBundle) return;
  const root = document.getElementById("swagger-ui") || document.body;
  const heading = document.createElement("h1");
  heading.textContent = "clipforge search API";
  const note = document.createElement("p");
  note.innerHTML =
    'Swagger UI could not be loaded from its CDN (offline?). The full schema is at ' +
    '<a href="/openapi.json">/openapi.json</a>; the routes are:';
  const list = document.createElement("ul");
  list.id = "fallback-routes";
  root.replaceChildren(heading, note, list);
  root.style.fontFamily = "system-ui, sans-serif";
  root.style.margin = "1.5rem";
  try {
    const schema = await (await fetch("/openapi.json")).json();
    for (const [path, operations] of Object.entries(schema.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const item = document.createElement("li");
        const code = document.createElement("code");
        code.textContent = `${method.toUpperCase()} ${path}`;
        item.append(code, ` — ${operation.summary || ""}`);
        list.append(item);
      }
    }
  } catch (err) {
    note.textContent = `The API schema could not be loaded: ${err.message}`;
  }
});
