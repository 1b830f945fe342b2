// Sliders for the batch size and the sequence length (issue 25): each moves its number field in doubling
// steps through the field's own input event, so that the link, the checks and the answer follow as they
// do for typing; each shows its value, and follows the field when it is typed, applied or loaded.
import { $, form, app } from "./dom.js";

// slider id -> the form field it moves, the schema field that bounds it, its lowest power of two, the unit
const SLIDERS = { "batch-slider": ["batch", "workload.batch_size", 0, "sequence", 10], "seq-slider": ["seq", "workload.seq_len", 7, "token", 20] };

function bounds(path, low, high) {
  const f = (app.catalog && app.catalog.request.fields[path]) || {};
  const top = f.maximum ? Math.floor(Math.log2(f.maximum)) : high;
  return [Math.max(low, f.minimum ? Math.ceil(Math.log2(f.minimum)) : low), Math.min(high, top)];
}

const words = (n, unit) => `${n.toLocaleString("en")} ${unit}${n === 1 ? "" : "s"}`;

// Each slider's position, value and visibility from its field.
export function syncSliders() {
  for (const [id, [param, path, low, unit, high]] of Object.entries(SLIDERS)) {
    const slider = $(`#${id}`), field = form.elements[param];
    const [min, max] = bounds(path, low, high);
    slider.min = String(min); slider.max = String(max);
    const n = Number(field.value);
    if (Number.isFinite(n) && n > 0) {
      slider.value = String(Math.min(max, Math.max(min, Math.round(Math.log2(n)))));
      slider.setAttribute("aria-valuetext", words(n, unit));
      $(`#${id}-value`).textContent = n.toLocaleString("en");
    }
    slider.closest(".slider").hidden = Boolean(field.closest("label") && field.closest("label").hidden);
  }
}

export function wireSliders() {
  for (const [id, [param, , , unit]] of Object.entries(SLIDERS)) {
    const slider = $(`#${id}`);
    slider.addEventListener("input", (event) => {
      event.stopPropagation();                      // the field's own event below is the one the page reads
      const n = 2 ** Number(slider.value);
      const field = form.elements[param];
      field.value = String(n);
      slider.setAttribute("aria-valuetext", words(n, unit));
      $(`#${id}-value`).textContent = n.toLocaleString("en");
      field.dispatchEvent(new Event("input", { bubbles: true }));
    });
  }
  form.addEventListener("input", (event) => { if (["batch", "seq"].includes(event.target.name)) syncSliders(); });
  // every new answer (a link, Apply, Use, the back button): the sliders follow the fields
  new MutationObserver(syncSliders).observe(document.body, { attributes: true, attributeFilter: ["data-computed"] });
}
