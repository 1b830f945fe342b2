import { readAtMost } from "./state.js";
import { $, form, make, text, app } from "./dom.js";
import { readControl, stateToForm } from "./form.js";

// ---- a model by its Hugging Face id ---------------------------------------------
// Only on the user's action (the button, or opening a link that names an id): GET the repository's
// config.json, at most the request's size limit, then the core reads it as a pasted config.
export const HUB_TIMEOUT_MS = 15000;
export const hubCache = new Map();                 // id -> config text fetched in this page (back/forward needs no refetch)
// What users paste: an id, or the model's page on the Hub (https://huggingface.co/Qwen/Qwen2.5-14B-Instruct,
// with or without /tree/main, /blob/main/config.json, a query or a fragment): the id is the URL's first two
// path segments.
const HUB_URL = /^(?:https?:\/\/)?(?:www\.)?(?:huggingface\.co|hf\.co)\/([^/?#\s]+\/[^/?#\s]+)(?:[/?#].*)?$/i;
export function hubId(raw) {
  const s = raw.trim();
  const m = HUB_URL.exec(s);
  return m ? m[1] : s;
}
// GET one file of a Hub repository, at most the request's size limit; null (and why, in ``status``) on failure.
async function hubFile(id, url, file, status) {
  text(status, `Fetching ${id}/${file} from huggingface.co…`);
  const limit = app.catalog.request.limits.max_json_chars;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), HUB_TIMEOUT_MS);
  try {
    const res = await fetch(url, { signal: abort.signal, credentials: "omit", redirect: "follow" });
    if (res.status === 401 || res.status === 403) throw new Error(`${id} is gated or private (HTTP ${res.status}): accept its licence on the Hub, download its ${file} and paste or drop it here`);
    if (res.status === 404) throw new Error(`the Hub has no repository ${id} with ${/^[aeiou]/.test(file) ? "an" : "a"} ${file} (HTTP 404)`);
    if (!res.ok) throw new Error(`the Hub answered HTTP ${res.status}`);
    return await readAtMost(res.body.getReader(), limit, `its ${file} is larger than ${limit.toLocaleString()} bytes`);
  } catch (err) {
    const why = err.name === "AbortError" ? `huggingface.co did not answer within ${HUB_TIMEOUT_MS / 1000} s`
      : err instanceof TypeError ? "could not reach huggingface.co (offline, or blocked by the network)" : err.message;
    text(status, `Could not fetch ${id}: ${why}. You can paste or drop its ${file} below instead.`);
    return null;
  } finally {
    clearTimeout(timer);
  }
}
function validId(id, status, what) {
  if (new RegExp(app.catalog.request.hub.id_pattern).test(id)) return true;
  text(status, `“${id.slice(0, 80)}” is not a Hugging Face ${what} id (owner/name).`);
  return false;
}
export async function fetchHub(raw) {
  const id = hubId(raw);
  if (!validId(id, $("#hub-status"), "model")) return false;
  const body = await hubFile(id, app.catalog.request.hub.config_url.replace("{id}", id), "config.json", $("#hub-status"));
  if (body === null) return false;
  hubCache.set(id, body);
  app.state.source = "config";
  app.state.cfg = body;
  app.state.hub = id;
  $("#config-text").value = body;
  text($("#hub-status"), `Fetched ${id}/config.json (${body.length.toLocaleString()} characters).`);
  return true;
}
// A PEFT adapter by its Hub id (issue 24 item 1): its adapter_config.json fills the PEFT field, which the
// core reads and checks as a pasted one; the link then carries the config itself, not the id.
export async function fetchAdapter(raw) {
  const id = hubId(raw);
  const status = $("#peft-hub-status");
  if (!validId(id, status, "adapter")) return false;
  const body = await hubFile(id, app.catalog.request.hub.adapter_url.replace("{id}", id), "adapter_config.json", status);
  if (body === null) return false;
  const box = form.elements.peft;
  box.value = body;
  text(status, `Fetched ${id}/adapter_config.json (${body.length.toLocaleString()} characters).`);
  return readControl(box);
}
$("#peft-hub-fetch").addEventListener("click", async () => {
  app.fromURL = false;
  if (await fetchAdapter($("#peft-hub-id").value)) app.update();
});
$("#hub-fetch").addEventListener("click", async () => {
  const id = $("#hub-id").value.trim();
  app.fromURL = false;
  if (await fetchHub(id)) { stateToForm(); app.update(); }
});

// Hub search (issue 25): on the button only, the Hub's own model search (api/models?search=, the most
// downloaded first) lists ids to pick; a pick fetches that id's config.json as the Fetch button does.
const HUB_SEARCH = "https://huggingface.co/api/models?search={q}&sort=downloads&direction=-1&limit=20";
async function searchHub() {
  const q = hubId($("#hub-id").value).slice(0, 96);
  if (!q) { text($("#hub-status"), "Type part of a model's name first."); return; }
  text($("#hub-status"), `Searching huggingface.co for “${q}”…`);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), HUB_TIMEOUT_MS);
  let found;
  try {
    const res = await fetch(HUB_SEARCH.replace("{q}", encodeURIComponent(q)), { signal: abort.signal, credentials: "omit" });
    if (!res.ok) throw new Error(`the Hub answered HTTP ${res.status}`);
    const body = await readAtMost(res.body.getReader(), app.catalog.request.limits.max_json_chars, "the answer is too large");
    const list = JSON.parse(body);
    found = (Array.isArray(list) ? list : []).map((m) => m && (m.id || m.modelId)).filter((id) => typeof id === "string"
      && new RegExp(app.catalog.request.hub.id_pattern).test(id));
  } catch (err) {
    text($("#hub-status"), `The Hub search did not answer: ${err.name === "AbortError" ? "timed out" : err instanceof TypeError ? "could not reach huggingface.co" : err.message}.`);
    return;
  } finally {
    clearTimeout(timer);
  }
  text($("#hub-status"), found.length ? `${found.length} model${found.length === 1 ? "" : "s"} on the Hub match “${q}”; choose one.` : `No model on the Hub matches “${q}”.`);
  $("#hub-results").replaceChildren(...found.map((id) => {
    const b = make("button", { type: "button", text: id, "data-value": id });
    b.addEventListener("click", async () => {
      $("#hub-id").value = id;
      $("#hub-results").replaceChildren();
      app.fromURL = false;
      if (await fetchHub(id)) { stateToForm(); app.update(); }
    });
    return make("li", {}, b);
  }));
}
$("#hub-search").addEventListener("click", searchHub);
