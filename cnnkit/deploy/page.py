"""The one web page ``cnnkit serve`` shows: drop or pick an image, see the top-5 classes with bars and the
Grad-CAM overlay (a classifier), the image with its box drawn (a localiser), or the objects found, with bars of
their scores, and the image with their boxes or masks drawn (a detector or segmenter). It calls ``POST /predict``."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cnnkit · {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
 #drop {{ display: block; border: 2px dashed #888; border-radius: 8px; padding: 2em; text-align: center;
         cursor: pointer; }}
 #drop.over {{ background: #eef; }}
 .row {{ display: flex; gap: 2em; margin-top: 1.5em; flex-wrap: wrap; }}
 img {{ max-width: 22em; border-radius: 4px; }}
 .bar {{ display: flex; align-items: center; margin: .3em 0; }}
 .bar span {{ width: 12em; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }}
 .bar div {{ background: #4a7bd0; height: 1em; margin: 0 .5em; }}
 #error {{ color: #b00; }}
 small {{ color: #666; }}
</style></head>
<body>
<h1>cnnkit · {title}</h1>
<p><small>{subtitle}</small></p>
<label id="drop">Drop an image here, or click to pick one
 <input id="file" type="file" accept="image/*" hidden></label>
<p id="error"></p>
<div class="row">
 <div><h3>Image</h3><img id="preview" alt=""></div>
 <div><h3 id="overlay-title"></h3><img id="overlay" alt=""></div>
 <div><h3 id="results-title">Top classes</h3><div id="top1"></div><div id="bars"></div></div>
</div>
<script>
const drop = document.getElementById("drop"), input = document.getElementById("file");
const esc = s => String(s).replace(/[&<>"']/g, c => "&#" + c.charCodeAt(0) + ";");
async function send(file) {{
  document.getElementById("error").textContent = "";
  document.getElementById("preview").src = URL.createObjectURL(file);
  const body = new FormData(); body.append("file", file);
  const r = await fetch("predict?overlay=true", {{ method: "POST", body }});
  const out = await r.json();
  if (!r.ok) {{ document.getElementById("error").textContent = out.detail; return; }}
  const objects = out.objects !== undefined;  // a detector's or segmenter's answer
  const rows = objects ? out.objects.map(o => [o.label, o.score]) : out.topk.map(t => [t.label, t.probability]);
  document.getElementById("results-title").textContent =
      objects ? `Objects found (${{rows.length}})` : "Top classes";
  document.getElementById("top1").innerHTML = rows.length
      ? "<b id='top1-label'>" + esc(rows[0][0]) + "</b> " + (100 * rows[0][1]).toFixed(1) + "%"
      : "<b id='top1-label'>none</b> above the score threshold";
  document.getElementById("bars").innerHTML = rows.map(([label, p]) =>
      `<div class="bar"><span title="${{esc(label)}}">${{esc(label)}}</span>` +
      `<div style="width:${{(12 * p).toFixed(2)}}em"></div>${{(100 * p).toFixed(1)}}%</div>`
  ).join("");
  const ov = document.getElementById("overlay");
  document.getElementById("overlay-title").textContent = out.overlay_kind || "";
  if (out.overlay) {{ ov.src = out.overlay; }} else {{ ov.removeAttribute("src"); }}
}}
input.addEventListener("change", () => input.files[0] && send(input.files[0]));
drop.addEventListener("dragover", e => {{ e.preventDefault(); drop.classList.add("over"); }});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => {{ e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0]); }});
</script>
</body></html>
"""
