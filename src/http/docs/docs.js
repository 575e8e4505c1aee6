// Renders /openapi.json as a list of operations. No third-party code, no
// inline script (the page's CSP allows only same-origin scripts), and only
// textContent for values taken from the document.
"use strict";

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children || []) node.append(c);
  return node;
}

function text(tag, value, attrs) {
  const node = el(tag, attrs);
  node.textContent = value == null ? "" : String(value);
  return node;
}

function resolve(doc, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) {
    const name = schema.$ref.split("/").pop();
    schema = (doc.components && doc.components.schemas || {})[name];
  }
  return schema || {};
}

function describeSchema(doc, schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  const parts = [];
  const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type;
  if (type) parts.push(type);
  if (schema.format) parts.push("format " + schema.format);
  if (schema.enum) parts.push("one of " + schema.enum.join(", "));
  if (schema.pattern) parts.push("pattern " + schema.pattern);
  for (const k of ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"]) {
    if (schema[k] !== undefined) parts.push(k + " " + schema[k]);
  }
  if (schema.items) parts.push("of " + describeSchema(doc, schema.items));
  return parts.join("; ");
}

function schemaTable(doc, schema) {
  const s = resolve(doc, schema);
  const required = new Set(s.required || []);
  const rows = Object.entries(s.properties || {}).map(([name, prop]) =>
    el("tr", {}, [
      text("td", name + (required.has(name) ? " *" : "")),
      text("td", describeSchema(doc, prop)),
      text("td", prop.description || ""),
    ]));
  if (!rows.length) return text("p", describeSchema(doc, schema));
  return el("table", {}, [el("tr", {}, [text("th", "field"), text("th", "schema"), text("th", "")]), ...rows]);
}

function operation(doc, path, method, op) {
  const body = el("div", { class: "body" });
  if (op.description) body.append(text("p", op.description));
  const params = op.parameters || [];
  if (params.length) {
    body.append(text("h4", "Parameters"));
    body.append(el("table", {}, [
      el("tr", {}, ["name", "in", "schema", ""].map((h) => text("th", h))),
      ...params.map((p) => el("tr", {}, [
        text("td", p.name + (p.required ? " *" : "")),
        text("td", p.in),
        text("td", describeSchema(doc, p.schema)),
        text("td", p.description || ""),
      ])),
    ]));
  }
  const content = op.requestBody && op.requestBody.content || {};
  for (const [type, media] of Object.entries(content)) {
    body.append(text("h4", "Request body (" + type + ")"));
    body.append(schemaTable(doc, media.schema));
  }
  body.append(text("h4", "Responses"));
  body.append(el("table", {}, Object.entries(op.responses || {}).map(([status, r]) => {
    const types = Object.keys(r.content || {}).join(", ");
    const links = Object.entries(r.links || {}).map(([n, l]) => n + " → " + l.operationId).join("; ");
    return el("tr", {}, [text("td", status), text("td", r.description || ""), text("td", types), text("td", links)]);
  })));
  const summary = el("summary", {}, [
    text("span", method, { class: "method " + method }),
    text("span", path, { class: "path" }),
    text("span", " " + (op.summary || "")),
    text("span", (op.tags || []).join(", "), { class: "tag" }),
  ]);
  const node = el("details", { class: "op" }, [summary, body]);
  node.dataset.search = [method, path, op.summary, (op.tags || []).join(" ")].join(" ").toLowerCase();
  return node;
}

async function main() {
  const target = document.getElementById("ops");
  try {
    const response = await fetch("/openapi.json", { credentials: "omit" });
    const doc = await response.json();
    target.replaceChildren();
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of ["get", "put", "post", "patch", "delete"]) {
        if (item[method]) target.append(operation(doc, path, method, item[method]));
      }
    }
  } catch (e) {
    target.replaceChildren(text("p", "Could not load /openapi.json."));
  }
  document.getElementById("filter").addEventListener("input", (event) => {
    const q = event.target.value.toLowerCase();
    for (const node of target.children) node.hidden = q && !node.dataset.search.includes(q);
  });
}

main();
