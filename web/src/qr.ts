// QR codes drawn on a canvas from the worker's modules (no image decoding, no markup).
import type { Qr } from "./core";
import { el } from "./dom";

const QUIET = 4; // modules of light margin on each side, as the standard asks

/// A canvas showing `qr` about `cssSize` pixels wide, each module a whole number of device
/// pixels so that the edges stay sharp for scanners.
export function qrCanvas(qr: Qr | null | undefined, label: string, cssSize = 220): HTMLElement {
  if (!qr || qr.width <= 0 || qr.modules.length !== qr.width * qr.width) {
    return el("p", { class: "muted" }, "(No QR code for this one: use the text.)");
  }
  const side = qr.width + 2 * QUIET;
  const ratio = Math.max(1, Math.round(window.devicePixelRatio || 1));
  const scale = Math.max(2, Math.floor(cssSize / side)); // CSS pixels per module
  const canvas = el("canvas", { class: "qr", role: "img", "aria-label": label });
  canvas.width = side * scale * ratio;
  canvas.height = side * scale * ratio;
  // CSSOM, not a style attribute: the page's CSP has no 'unsafe-inline'.
  canvas.style.width = `${side * scale}px`;
  canvas.style.height = `${side * scale}px`;
  const g = canvas.getContext("2d");
  if (!g) return el("p", { class: "error" }, "This browser cannot draw the QR code.");
  const px = scale * ratio;
  // Dark on light whatever the page's colour scheme: scanners expect it.
  g.fillStyle = "#fff";
  g.fillRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = "#000";
  for (let y = 0; y < qr.width; y++) {
    for (let x = 0; x < qr.width; x++) {
      if (qr.modules[y * qr.width + x] === "1") g.fillRect((x + QUIET) * px, (y + QUIET) * px, px, px);
    }
  }
  return canvas;
}
