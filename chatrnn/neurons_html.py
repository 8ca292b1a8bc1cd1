"""``chatrnn neurons --html``: one self-contained page (no network: inline CSS, JS and SVG) that shows
what the interpretable units do.

* The text coloured by one unit, as in Karpathy's "The Unreasonable Effectiveness of Recurrent
  Neural Networks": red where the unit is positive, blue where negative (h as it is, in [-1, 1];
  a cell state c through tanh, as the LSTM itself reads it), the exact value on hover.
* A menu of the top units per feature (the units :mod:`chatrnn.neurons` ranked), with scores;
  ``report.html#c1:170`` opens on unit 170 of layer 1's cell state.
* Gate saturation per layer (Karpathy, Johnson and Fei-Fei, 2015, fig. 4): for each gate, how
  many units spend which fraction of the time saturated (< 0.1 or > 0.9; tanh candidates beyond
  ±0.9), as histograms in inline SVG.

Each unit's values are embedded once as base64 int8 (scaled by the unit's largest magnitude), so a
page with a hundred units over a few thousand characters stays well under a megabyte.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from chatrnn.errors import ChatrnnError
from chatrnn.neurons import Scores
from chatrnn.probe import GATE_NAMES, Trace

EXCERPT_CHARS = 4000
BINS = 10
GATE_COLOURS = {"lstm": ("i", "f", "o", "g"), "gru": ("r", "z", "n"), "rnn": ()}


def _encode(values: np.ndarray) -> tuple[str, float]:
    scale = float(np.abs(values).max()) if values.size else 0.0
    q = np.zeros(values.shape, np.int8) if scale == 0 else np.round(values / scale * 127).astype(np.int8)
    return base64.b64encode(q.tobytes()).decode("ascii"), scale


def _histogram_svg(sat: np.ndarray, title: str) -> str:
    """Units per bin of "fraction of time saturated", left (blue) and right (red) bars side by side."""
    W, Hh, pad = 180, 90, 14
    left = np.histogram(sat[:, 0], bins=BINS, range=(0, 1))[0]
    right = np.histogram(sat[:, 1], bins=BINS, range=(0, 1))[0]
    top = max(1, int(left.max()), int(right.max()))
    bw = (W - 2 * pad) / BINS
    bars = []
    for k in range(BINS):
        for j, (counts, colour) in enumerate(((left, "#3b6fd8"), (right, "#d83b3b"))):
            h = (Hh - 2 * pad) * counts[k] / top
            x = pad + k * bw + j * bw / 2
            side = "< 0.1" if j == 0 else "> 0.9"
            label = f"{side} for {k / BINS:.0%}-{(k + 1) / BINS:.0%} of the time: {counts[k]} units"
            bars.append(
                f'<rect x="{x:.1f}" y="{Hh - pad - h:.1f}" width="{bw / 2 - 1:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{html.escape(label)}</title></rect>'
            )
    axis = (
        f'<line x1="{pad}" y1="{Hh - pad}" x2="{W - pad}" y2="{Hh - pad}" stroke="#888"/>'
        f'<text x="{pad}" y="{Hh - 2}" class="ax">0</text><text x="{W - pad - 16}" y="{Hh - 2}" class="ax">100%</text>'
        f'<text x="{pad}" y="10" class="ax">{html.escape(title)} (max {top})</text>'
    )
    return f'<svg width="{W}" height="{Hh}" viewBox="0 0 {W} {Hh}" role="img">{axis}{"".join(bars)}</svg>'


def render(
    trace: Trace, scores: Scores, top: int = 10, excerpt: int = EXCERPT_CHARS, title: str = "", by: str = "score"
) -> str:
    """The page as a string (see the module docstring); the menu ranks units ``by`` |score| or AUC,
    as the table and the JSON do."""
    n = min(excerpt, len(trace))
    states = trace.states()
    menu, units, index = [], [], {}
    for fs in scores.features:
        items = []
        for u in scores.top(fs, top, by):
            key = f"{u.state}{u.layer}:{u.unit}"
            if key not in index:
                index[key] = len(units)
                data, scale = _encode(states[u.state][u.layer, :n, u.unit])
                units.append({"key": key, "state": u.state, "layer": u.layer, "unit": u.unit, "q": data, "s": scale})
            items.append({"u": index[key], "score": round(u.score, 3), "auc": round(u.auc, 3), "sign": u.sign})
        menu.append(
            {"feature": fs.feature.name, "description": fs.feature.description, "skipped": fs.skipped, "units": items}
        )
    payload = {"text": trace.text[:n], "units": units, "menu": menu, "chars": scores.chars}
    # No "<" at all inside the data block: escaping "</" alone is not enough, since a text holding
    # "<!--<script>" (an HTML or JS file) puts the parser in the script's double-escaped state,
    # where the block's own "</script>" no longer closes it and the page's script is swallowed.
    blob = json.dumps(payload, ensure_ascii=False).replace("<", "\\u003c")
    gate_rows = []
    for layer in range(trace.layers):
        cells = []
        for g in GATE_COLOURS[trace.cell]:
            if g in trace.saturation:
                cells.append(f"<td>{_histogram_svg(trace.saturation[g][layer], f'{g}: {GATE_NAMES[g]}')}</td>")
        if cells:
            gate_rows.append(f"<tr><th>layer {layer}</th>{''.join(cells)}</tr>")
    gates_html = (
        "<table class='gates'>" + "".join(gate_rows) + "</table>"
        if gate_rows
        else "<p>This model's cells have no gates (a plain RNN).</p>"
    )
    head = html.escape(title or "chatrnn neurons")
    return _PAGE.format(
        title=head,
        chars=f"{scores.chars:,}",
        shown=f"{n:,}",
        cell=trace.cell.upper(),
        layers=trace.layers,
        hidden=trace.hidden,
        gates=gates_html,
        data=blob,
    )


def write(
    path: str | Path,
    trace: Trace,
    scores: Scores,
    top: int = 10,
    excerpt: int = EXCERPT_CHARS,
    title: str = "",
    by: str = "score",
) -> Path:
    """Write the page atomically (a temp file renamed into place)."""
    p = Path(path).expanduser()
    page = render(trace, scores, top, excerpt, title, by)
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        tmp.write_text(page, "utf-8")
        tmp.replace(p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ChatrnnError(f"cannot write {p}: {e.strerror}") from None
    return p


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.2em; color: #222; background: #fafafa; }}
h1 {{ font-size: 1.3em; margin: 0 0 .2em; }} h2 {{ font-size: 1.05em; margin: 1.2em 0 .4em; }}
.meta {{ color: #666; font-size: .9em; }}
#layout {{ display: flex; gap: 1.2em; align-items: flex-start; }}
#menu {{ width: 300px; flex: none; max-height: 80vh; overflow: auto; font-size: .85em; background: #fff;
        border: 1px solid #ddd; padding: .4em; }}
#menu h3 {{ font-size: 1em; margin: .6em 0 .2em; }} #menu .skip {{ color: #999; font-style: italic; }}
#menu button {{ display: block; width: 100%; text-align: left; border: 0; background: none; padding: 2px 4px;
               cursor: pointer; font: inherit; font-family: ui-monospace, monospace; }}
#menu button:hover {{ background: #eef; }} #menu button.on {{ background: #dde4ff; font-weight: bold; }}
#text {{ flex: 1; white-space: pre-wrap; word-break: break-all; font-family: ui-monospace, "D2Coding",
        "Noto Sans Mono CJK KR", monospace; font-size: 14px; line-height: 1.45; background: #fff;
        border: 1px solid #ddd; padding: .6em; max-height: 80vh; overflow: auto; }}
#text span {{ border-radius: 2px; }}
#now {{ font-family: ui-monospace, monospace; margin: .3em 0; min-height: 1.3em; }}
#tip {{ position: fixed; pointer-events: none; background: #222; color: #fff; padding: 2px 6px;
       font: 12px ui-monospace, monospace; border-radius: 3px; display: none; }}
.legend {{ display: inline-block; width: 160px; height: 10px; vertical-align: middle;
          background: linear-gradient(90deg, rgb(40,90,255), #fff, rgb(255,40,40)); border: 1px solid #ccc; }}
table.gates td, table.gates th {{ padding: 2px 6px; }} table.gates th {{ text-align: right; font-weight: normal; }}
svg .ax {{ font: 9px sans-serif; fill: #555; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="meta">{cell}, {layers} layers x {hidden} units; scored on {chars} characters, {shown} shown.
Colour: <span class="legend"></span> -1 .. +1 (h; a cell state c as tanh(c)). Hover a character for the value.</div>
<div id="now"></div>
<div id="layout"><div id="menu"></div><div id="text"></div></div>
<h2>Gate saturation</h2>
<div class="meta">Per layer and gate: how many units are saturated for what fraction of the time
(<span style="color:#3b6fd8">blue: &lt; 0.1</span>, <span style="color:#d83b3b">red: &gt; 0.9</span>;
tanh candidates: beyond &plusmn;0.9). Karpathy, Johnson &amp; Fei-Fei (2015), fig. 4.</div>
{gates}
<div id="tip"></div>
<script type="application/json" id="data">{data}</script>
<script>
(function () {{
  const D = JSON.parse(document.getElementById("data").textContent);
  const chars = Array.from(D.text);
  const box = document.getElementById("text"), menu = document.getElementById("menu");
  const tip = document.getElementById("tip"), now = document.getElementById("now");
  const spans = chars.map(function (ch) {{
    const s = document.createElement("span");
    s.textContent = ch === "\\n" ? "\\u21b5\\n" : ch;
    box.appendChild(s);
    return s;
  }});
  const cache = {{}};
  function values(u) {{
    if (cache[u]) return cache[u];
    const U = D.units[u], raw = atob(U.q), out = new Float32Array(raw.length);
    for (let i = 0; i < raw.length; i++) {{ let b = raw.charCodeAt(i); if (b > 127) b -= 256; out[i] = b / 127 * U.s; }}
    return (cache[u] = out);
  }}
  function colour(v) {{
    // white at 0, towards rgb(255,40,40) at +1 and rgb(40,90,255) at -1
    v = Math.max(-1, Math.min(1, v));
    const to = v >= 0 ? [255, 40, 40] : [40, 90, 255], a = Math.abs(v);
    return "rgb(" + to.map(function (c) {{ return Math.round(255 - (255 - c) * a); }}).join(",") + ")";
  }}
  let current = null, buttons = [];
  function show(u, label) {{
    const U = D.units[u], vs = values(u);
    current = u;
    for (let i = 0; i < spans.length; i++) {{
      const v = vs[i]; spans[i].style.background = colour(U.state === "c" ? Math.tanh(v) : v);
      spans[i].dataset.v = v.toFixed(3);
    }}
    now.textContent = "unit " + U.state + " layer " + U.layer + " #" + U.unit + (label ? "  \\u2014  " + label : "");
    buttons.forEach(function (b) {{ b.classList.toggle("on", b.dataset.u == u && b.dataset.label === label); }});
  }}
  D.menu.forEach(function (m) {{
    const h = document.createElement("h3"); h.textContent = m.feature; h.title = m.description; menu.appendChild(h);
    if (m.skipped) {{
      const p = document.createElement("div");
      p.className = "skip"; p.textContent = m.skipped; menu.appendChild(p);
    }}
    m.units.forEach(function (it) {{
      const U = D.units[it.u], b = document.createElement("button");
      const label = m.feature + ": score " + it.score.toFixed(3) + ", AUC " + it.auc.toFixed(3)
        + (it.sign < 0 ? " (low = present)" : "");
      b.textContent = U.state + U.layer + ":" + U.unit + "  r=" + it.score.toFixed(2) + "  auc=" + it.auc.toFixed(2);
      b.dataset.u = it.u; b.dataset.label = label; b.title = label;
      b.addEventListener("click", function () {{ show(it.u, label); }});
      menu.appendChild(b); buttons.push(b);
    }});
  }});
  box.addEventListener("mousemove", function (e) {{
    const t = e.target;
    if (t.tagName !== "SPAN" || current === null) {{ tip.style.display = "none"; return; }}
    const U = D.units[current];
    tip.textContent = U.state + U.layer + ":" + U.unit + " = " + t.dataset.v;
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; tip.style.display = "block";
  }});
  box.addEventListener("mouseleave", function () {{ tip.style.display = "none"; }});
  // a link may name the unit to show first: report.html#c1:170 (state, layer, ":", unit)
  const wanted = decodeURIComponent(location.hash.slice(1));
  const pick = buttons.find(function (b) {{ return D.units[b.dataset.u].key === wanted; }}) || buttons[0];
  if (pick) pick.click();
}})();
</script>
</body></html>
"""
