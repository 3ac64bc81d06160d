"""One self-contained HTML page about a checkpoint: architecture, training, results, activations,
filters, explanations and the notes' CONV demo.

:func:`build_report` returns the page as a string; :func:`write_report` writes it atomically.
Scripts, styles and images are inline (images as ``data:`` addresses), so the file opens
offline and can be mailed. The pictures come from :mod:`volnet.viz` as arrays; this module
only lays them out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np

from ..analysis import analyze
from ..resources import format_bytes
from ..ops import softmax
from ..train.metrics import confusion_matrix
from . import explain, svg
from .conv_demo import conv_demo_data
from .pictures import activation_grid, blend, colorbar, data_uri, filter_grid, to_rgb, upscale, upscale_to

# Sizes that keep the page small: a few sample images, thumbnails of ~160 pixels.
VIEW_PIXELS = 160
MAX_SLICES = 64
MAX_SAMPLES = 32  # images a page shows at most (`volnet report --samples` is refused beyond it)
PAGE_BUDGET = 24_000_000  # bytes of the images' data after which further images are left out


@dataclass
class Sample:
    """One image shown in sections 4, 6 and 7: raw (in [0, 1]) and as the net sees it (normalised)."""

    name: str
    raw: np.ndarray
    x: np.ndarray
    label: int | None = None
    notes: list[str] = field(default_factory=list)


def _format_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _hyper(layer) -> str:
    config = layer.get_config() if hasattr(layer, "get_config") else {}
    keys = [k for k in ("K", "F", "S", "P", "dilation", "p") if k in config and config[k] is not None]
    return ", ".join(f"{k}={config[k]}" for k in keys)


# -- section 1: the architecture ------------------------------------------------------------

def _architecture(net, optimizer: str) -> str:
    """The boxes and the table; training memory counts ``optimizer``'s step cache (the one the run used)."""
    from ..spec import to_notation

    report = analyze(net, optimizer=optimizer)
    kept = report.train.kept_by
    rows = [row for row in report.rows]
    boxes = [{"shape": tuple(net.input_shape), "label": "input", "kind": "input",
              "tooltip": f"INPUT {'x'.join(map(str, net.input_shape))}"}]
    table = []
    for row in rows:
        hyper = _hyper(row.layer) if row.layer is not None else ""
        rf = f"{row.rf.size[0]}x{row.rf.size[1]} (jump {row.rf.jump[0]})"
        tip = (f"{row.path} {row.name}\n{hyper}\noutput {'x'.join(map(str, row.output_shape))}\n"
               f"parameters {row.params:,}\nmultiply-adds {row.macs:,}\n"
               f"kept for backprop {format_bytes(kept.get(row.path, 0))}\nreceptive field {rf}")
        if row.depth == 0:
            boxes.append({"shape": tuple(row.output_shape), "label": f"{row.path} {row.kind}", "kind": row.kind,
                          "tooltip": tip})
        table.append(f"<tr><td>{escape(row.path)}</td><td>{escape(row.name)}</td><td>{escape(hyper)}</td>"
                     f"<td>{'x'.join(map(str, row.output_shape))}</td><td>{row.params:,}</td><td>{row.macs:,}</td>"
                     f"<td>{escape(format_bytes(kept.get(row.path, 0)))}</td><td>{rf}</td></tr>")
    return (f'<p class="notation"><code>{escape(to_notation(net))}</code></p>'
            f'<div class="scroll">{svg.architecture(boxes)}</div>'
            f"<p>{report.total_params:,} parameters, {_format_count(report.total_macs)} multiply-adds per image, "
            f"{format_bytes(report.train.total)} to train one image (batch 1, {optimizer}). Hover a box for its "
            "numbers.</p>"
            '<details><summary>every layer</summary><table class="rows"><tr><th>path</th><th>layer</th>'
            "<th>K/F/S/P</th><th>output</th><th>parameters</th><th>multiply-adds</th><th>kept for backprop</th>"
            "<th>receptive field</th></tr>" + "".join(table) + "</table></details>")


# -- section 2: training curves --------------------------------------------------------------

def _training(history: list[dict]) -> str:
    if not history:
        return "<p>This checkpoint holds no training history.</p>"

    def series(key):
        return [(r["epoch"], r.get(key)) for r in history]

    charts = [
        svg.line_chart({"train loss": series("train_loss"), "validation loss": series("val_loss")}, title="loss"),
        svg.line_chart({"train accuracy": series("train_accuracy"), "validation accuracy": series("val_accuracy")},
                       title="accuracy"),
        svg.line_chart({"learning rate": series("lr")}, title="learning rate"),
    ]
    last = history[-1]
    val = f", validation accuracy {last['val_accuracy']:.2%}" if last.get("val_accuracy") is not None else ""
    epochs = f'{len(history)} epoch{"" if len(history) == 1 else "s"}'
    return (f'<div class="charts">{"".join(charts)}</div><p>{epochs}; last: train loss '
            f"{last['train_loss']:.4f}, train accuracy {last['train_accuracy']:.2%}{val}.</p>")


# -- section 3: results on the test split -----------------------------------------------------

def _predict(net, images, batch=256):
    return np.concatenate([explain.score_rows(net.forward(images[i: i + batch].astype(net.dtype), train=False))
                           for i in range(0, len(images), batch)])


def _results(test, predictions, classes, missing: str) -> str:
    if test is None:
        return f"<p>{escape(missing)}, so there are no results to show.</p>"
    labels = test.labels
    C = len(classes)
    confusion = confusion_matrix(labels, predictions, C)  # what volnet eval prints
    accuracy = float((labels == predictions).mean())
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    top = confusion.max() or 1
    head = "".join(f"<th>{escape(c)}</th>" for c in classes)
    body = []
    for t in range(C):
        cells = "".join(
            f'<td style="background:rgba(76,120,168,{0.1 + 0.9 * confusion[t, p] / top if confusion[t, p] else 0:.2f})"'
            f' title="true {escape(classes[t])}, predicted {escape(classes[p])}: {confusion[t, p]}">'
            f"{confusion[t, p] or ''}</td>" for p in range(C))
        body.append(f"<tr><th>{escape(classes[t])}</th>{cells}<td class='acc'>{per_class[t]:.1%}</td></tr>")
    matrix = (f'<table class="confusion"><tr><th>true \\ predicted</th>{head}<th>accuracy</th></tr>'
              + "".join(body) + "</table>")
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    pairs = []
    for flat in np.argsort(off, axis=None)[::-1][:5]:
        t, p = divmod(int(flat), C)
        if off[t, p] == 0:
            break
        where = np.flatnonzero((labels == t) & (predictions == p))[:4]
        thumbs = "".join(f'<img class="thumb" src="{data_uri(upscale_to(to_rgb(test.images[i]), 56))}" '
                         f'alt="test image {i}" title="test image {i}">' for i in where)
        times = f"{off[t, p]} time{'' if off[t, p] == 1 else 's'}"
        pairs.append(f"<li>{escape(classes[t])} taken for {escape(classes[p])}: {times} {thumbs}</li>")
    bars = "".join(f'<div class="bar"><span>{escape(c)}</span><i style="width:{200 * a:.1f}px"></i>'
                   f"<b>{a:.1%}</b></div>" for c, a in zip(classes, per_class))
    return (f'<p class="big">accuracy {accuracy:.2%} on {len(labels):,} test images</p>'
            f'<div class="cols"><div>{matrix}</div><div><h3>per class</h3>{bars}</div></div>'
            f"<h3>most confused pairs</h3><ul class='pairs'>{''.join(pairs) or '<li>none</li>'}</ul>")


# -- sections 4, 6, 7: one image through the net -----------------------------------------------

def _image_data(net, sample: Sample, classes, demo_layers) -> dict:
    volumes = explain.activations(net, sample.x)
    scores = volumes[-1].reshape(-1)  # (classes,), also from a net ending in GAP's 1x1xK
    probabilities = softmax(scores.astype(np.float64))
    target = int(np.argmax(probabilities))
    layers = []
    for index, (layer, volume) in enumerate(zip(net.layers, volumes)):
        picture = activation_grid(volume, MAX_SLICES)
        if volume.ndim == 1:
            picture = upscale_to(picture, 8 * 40) if picture.shape[1] < 40 else np.repeat(picture, 12, axis=0)
        elif max(picture.shape[:2]) < VIEW_PIXELS * 2:
            picture = upscale_to(picture, VIEW_PIXELS * 2)
        stats = {"min": float(volume.min()), "max": float(volume.max()), "mean": float(volume.mean())}
        if layer.kind == "relu":
            stats["dead"] = float(np.mean(volume <= 0))
        layers.append({"src": data_uri(picture), "shape": list(volume.shape), **stats,
                       "shown": int(min(volume.shape[-1], MAX_SLICES)) if volume.ndim == 3 else int(volume.size)})
    explanations = []
    base = sample.raw
    try:
        gradcam = f"Grad-CAM on layer {explain.gradcam_layer(net) + 1}"
    except ValueError:
        gradcam = "Grad-CAM"
    for name, compute, cmap in (
        ("saliency |d score / d input|", lambda: np.abs(explain.saliency(net, sample.x, target)).max(axis=2), "heat"),
        ("occlusion: drop in probability", lambda: explain.occlusion(net, sample.x, target), "signed"),
        (gradcam, lambda: explain.grad_cam(net, sample.x, target), "heat"),
        ("FC->CONV sliding-window probability", lambda: explain.sliding_map(net, sample.x, target), "heat"),
    ):
        try:
            values = compute()
        except (ValueError, NotImplementedError) as error:
            explanations.append({"name": name, "error": str(error)})
            continue
        # signed (occlusion): white at zero as in its legend, and drawn only where the occlusion changed something
        picture = blend(base, values, cmap, alpha=0.7 if cmap == "signed" else 0.6, fade=cmap == "signed")
        explanations.append({"name": name, "src": data_uri(upscale_to(picture, VIEW_PIXELS)), "cmap": cmap,
                             "low": float(values.min()), "high": float(values.max())})
    demos = {}
    for index in demo_layers:
        volume_in = sample.x if index == 0 else volumes[index - 1]
        demos[str(index)] = conv_demo_data(net.layers[index], volume_in, volumes[index])
    return {"name": sample.name, "label": None if sample.label is None else classes[sample.label],
            "original": data_uri(upscale_to(to_rgb(sample.raw), VIEW_PIXELS)),
            "scores": [float(s) for s in scores], "probabilities": [float(p) for p in probabilities],
            "predicted": classes[target], "layers": layers, "explanations": explanations, "demos": demos,
            "notes": sample.notes}


# -- section 5: filters and weight statistics --------------------------------------------------

def _filters(net, grads: dict) -> str:
    pictures, rows = [], []
    for index, layer in enumerate(net.layers, start=1):
        for path, sub in layer.named_layers():
            if sub.kind == "conv" and len(pictures) < 8:
                w = sub.weight
                picture = filter_grid(w, max_filters=32)
                picture = upscale(picture, max(1, 384 // max(picture.shape[:2])))
                m = float(np.abs(w).max())
                legend = ""
                if w.shape[2] == 3:
                    what = f"colour tiles: each pixel the filter's R, G, B weights, mid-grey 0, full colour +-{m:.3g}"
                else:
                    what = ("one tile per filter" if w.shape[2] == 1 else f"rows: filters; columns: input depth "
                            f"slices (first {min(w.shape[2], 16)} of {w.shape[2]})") + \
                        ", red positive, blue negative, white 0"
                    legend = (f'<div class="legend"><img src="{data_uri(colorbar("signed"))}" alt="colour scale">'
                              f"<span><i>{-m:.3g}</i><i>0</i><i>{m:.3g}</i></span></div>")
                pictures.append(f'<figure><img src="{data_uri(picture)}" alt="filters of layer {index}{path}">{legend}'
                                f"<figcaption>layer {index}{'.' + path if path else ''} ({type(sub).__name__}): "
                                f"{w.shape[3]} filters {w.shape[0]}x{w.shape[1]}x{w.shape[2]}, {what}"
                                "</figcaption></figure>")
        for name, p in layer.named_params():
            v = p.value.astype(np.float64)
            g = grads.get(f"{index}.{name}")
            ratio = (f"{np.linalg.norm(g):.3g}</td><td>{np.linalg.norm(g) / (np.linalg.norm(v) or 1):.3g}"
                     if g is not None else "-</td><td>-")
            rows.append(f"<tr><td>{index}.{escape(name)}</td><td>{'x'.join(map(str, v.shape))}</td>"
                        f"<td>{v.mean():.3g}</td><td>{v.std():.3g}</td><td>{v.min():.3g}</td><td>{v.max():.3g}</td>"
                        f"<td>{np.linalg.norm(v):.3g}</td><td>{ratio}</td></tr>")
    table = ('<table class="rows"><tr><th>parameter</th><th>shape</th><th>mean</th><th>std</th><th>min</th>'
             "<th>max</th><th>|w|</th><th>|grad|</th><th>|grad| / |w|</th></tr>" + "".join(rows) + "</table>")
    note = ("<p>Gradients: softmax loss on a batch of test images, network in inference mode.</p>" if grads else
            "<p>No test images, so no gradients.</p>")
    return f'<div class="filters">{"".join(pictures) or "<p>no CONV layers</p>"}</div>{table}{note}'


# -- the page ------------------------------------------------------------------------------------

def _load_test(metadata, net, limit):
    """``(test split, "")``, or ``(None, why there is none)``: no data set recorded, or its error (an unreadable
    image names the file), or images of another shape than the net's."""
    from ..train.setup import checkpoint_data

    name = metadata.get("data", {}).get("name")
    if name is None:
        return None, "This checkpoint does not record its data set"
    try:
        test = checkpoint_data(metadata, "test")
    except (OSError, ValueError) as error:
        return None, f"The test split of {name} could not be read ({error})"
    if test.images.shape[1:] != tuple(net.input_shape):
        return None, (f"The test images of {name} are {'x'.join(map(str, test.images.shape[1:]))} but the network "
                      f"takes {'x'.join(map(str, net.input_shape))}")
    if limit is not None and len(test) > limit:
        from ..data import Dataset

        test = Dataset(test.images[:limit], test.labels[:limit], test.classes)
    return test, ""


def _read_images(paths, net) -> list[tuple[str, np.ndarray, str]]:
    from ..data.images import read_image_with_note

    H, W, D = net.input_shape
    return [(Path(p).name, *read_image_with_note(p, size=(H, W), grayscale=D == 1)) for p in paths]


def _sample_indices(wrong: np.ndarray, samples: int) -> list[int]:
    """``min(samples, N)`` distinct test images: spread over the split, and the first misclassified one."""
    count = min(samples, len(wrong))
    first_wrong = [int(i) for i in np.flatnonzero(wrong)[:1]] if count > 1 else []
    spread = np.linspace(0, len(wrong) - 1, count - len(first_wrong)).astype(int)
    chosen = list(dict.fromkeys([*map(int, spread), *first_wrong]))
    rest = (i for i in range(len(wrong)) if i not in set(chosen))
    return chosen + [next(rest) for _ in range(count - len(chosen))]


def _within_budget(net, samples, classes, demo_layers) -> tuple[list[dict], str]:
    """The samples' page data while it stays within :data:`PAGE_BUDGET` bytes (the first one always), and a
    paragraph saying how many were left out ("" when none)."""
    shown, size = [], 0
    for sample in samples:
        entry = _image_data(net, sample, classes, demo_layers)
        size += len(json.dumps(entry))
        if shown and size > PAGE_BUDGET:
            break
        shown.append(entry)
    if len(shown) == len(samples):
        return shown, ""
    more = len(samples) - len(shown)
    return shown, (f"<p>{more} more image{'s were' if more > 1 else ' was'} left out to keep the page under "
                   f"{PAGE_BUDGET / 1e6:.0f} MB.</p>")


def build_report(checkpoint, images=(), *, samples: int = 4, test_limit: int | None = 1000,
                 reload_seconds: int | None = None) -> str:
    """The report page for ``checkpoint`` as HTML text.

    Args:
        checkpoint: a checkpoint written by ``volnet train``.
        images: image files to show in sections 4, 6 and 7; default: ``samples`` images of the test split.
        samples: how many test images to show when no ``images`` are given (at most the split's and
            :data:`MAX_SAMPLES`; images past :data:`PAGE_BUDGET` bytes are left out, and the page says so).
            Default: 4.
        test_limit: test images evaluated for section 3 (None: all). Default: 1000.
        reload_seconds: make the page reload itself this often (for a run still training). Default: None.
    """
    from ..train.checkpoint import load_model

    net, normalizer, _, metadata = load_model(checkpoint)
    classes = list(metadata.get("data", {}).get("classes") or [str(i) for i in range(net.output_shape[-1])])
    prepare = normalizer if normalizer is not None else (lambda a: a)
    test, missing = _load_test(metadata, net, test_limit)
    predictions = grads = None
    if test is not None:
        predictions = _predict(net, prepare(test.images)).argmax(axis=1)
        grads = explain.parameter_gradients(net, prepare(test.images[:64]), test.labels[:64])
    chosen: list[Sample] = []
    if images:
        for name, raw, note in _read_images(images, net):
            chosen.append(Sample(name, raw, prepare(raw[None])[0], notes=[note] if note else []))
    elif test is not None:
        for i in _sample_indices(predictions != test.labels, min(samples, MAX_SAMPLES)):
            chosen.append(Sample(f"test image {i}", test.images[i], prepare(test.images[i:i + 1])[0],
                                 int(test.labels[i])))
    else:  # no data and no images: a blank input shows the architecture's arithmetic all the same
        blank = np.full(net.input_shape, 0.5, dtype=np.float32)
        chosen.append(Sample("blank image (no test data found)", blank, prepare(blank[None])[0]))
    demo_layers = [i for i, layer in enumerate(net.layers) if layer.kind == "conv"][:3]
    shown, left_out = _within_budget(net, chosen, classes, demo_layers)
    data = {"classes": classes, "images": shown,
            "layers": [f"{i + 1} {layer.kind} {escape(_hyper(layer))}" for i, layer in enumerate(net.layers)],
            "demoLayers": demo_layers, "colorbars": {c: data_uri(colorbar(c)) for c in ("heat", "signed")}}
    sections = [
        ("architecture", "1. Architecture",
         _architecture(net, metadata.get("optimizer", {}).get("config", {}).get("name", "momentum"))),
        ("training", "2. Training", _training(metadata.get("history", []))),
        ("results", "3. Results on the test split", _results(test, predictions, classes, missing)),
        ("activations", "4. One image through the net", left_out + ACTIVATIONS_HTML),
        ("filters", "5. Filters and weights", _filters(net, grads or {})),
        ("explain", "6. Why this class", EXPLAIN_HTML),
        ("conv-demo", "7. The CONV demo with this net's numbers", DEMO_HTML),
    ]
    epoch = metadata.get("position", {}).get("epoch")
    title = f"volnet report: {Path(checkpoint).name}" + (f" (epoch {epoch})" if epoch else "")
    refresh = f'<meta http-equiv="refresh" content="{int(reload_seconds)}">' if reload_seconds else ""
    body = "".join(f'<section id="{key}"><h2>{heading}</h2>{html}</section>' for key, heading, html in sections)
    nav = " ".join(f'<a href="#{key}">{heading}</a>' for key, heading, _ in sections)
    # no "<" or ">" in the inline JSON: a name such as "<!--<script>" would otherwise change how the page parses
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e")
    return _valid_utf8(f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{refresh}'
            f"<title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><nav>{nav}</nav>"
            f'<div id="chooser" class="chooser"></div>{body}'
            f'<script type="application/json" id="report-data">{payload}</script><script>{SCRIPT}</script>'
            "</body></html>")


def _valid_utf8(text: str) -> str:
    """``text`` with the undecodable bytes of file and folder names (held as surrogate escapes) as U+FFFD, so that
    the page can be written as UTF-8."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return text.encode("utf-8", "replace").decode("utf-8")


def write_report(checkpoint, out, images=(), **options) -> Path:
    """Write :func:`build_report`'s page to ``out`` atomically (a temporary file, then a rename)."""
    from ..files import atomic_write_bytes

    return atomic_write_bytes(Path(out), build_report(checkpoint, images, **options).encode("utf-8"))


ACTIVATIONS_HTML = """
<div class="cols"><div><img id="act-original" class="pixelated" alt="input image"><p id="act-caption"></p></div>
<div><label>layer <select id="layer-select"></select></label>
<p id="act-stats"></p><img id="act-view" class="pixelated" alt="activation volume"></div>
<div><h3>class scores</h3><div id="scores"></div></div></div>
<p>Each tile is one depth slice of the layer's output volume (one scale for the whole volume: black the
minimum, white the maximum); a vector is one row of cells. "Dead" is the fraction of a RELU's outputs that are
zero for this image.</p>
"""

EXPLAIN_HTML = """
<p>Evidence for the predicted class <b id="explain-class"></b> of the image chosen above, each map over the image
with its colour scale.</p><div id="explanations" class="explanations"></div>
"""

DEMO_HTML = """
<p>As in the notes' animation: the filter slides over the zero-padded input; at each output position the values
under it (the receptive field) are multiplied element-wise by the filter's weights, summed over every depth slice,
and the bias is added. The numbers are this network's, on the image chosen above.</p>
<div class="demo-controls"><label>CONV layer <select id="demo-layer"></select></label>
<button id="demo-prev">&#9664; previous</button><button id="demo-next">next &#9654;</button>
<button id="demo-play">play</button> <span id="demo-position"></span></div>
<div id="demo-grids" class="demo-grids"></div>
<p id="demo-sum" class="big"></p>
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px 40px;color:#222}
h1{font-size:22px}h2{border-bottom:2px solid #4c78a8;padding-bottom:3px;margin-top:28px}
nav a{margin-right:10px;font-size:13px}section{padding:4px 0}
.chooser{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd;z-index:2}
.chooser button{margin-right:6px}.chooser button.on{background:#4c78a8;color:#fff}
.scroll{overflow-x:auto}.charts svg{margin-right:12px}.cols{display:flex;gap:28px;flex-wrap:wrap}
table.rows,table.confusion{border-collapse:collapse;font-size:12px}
table.rows td,table.rows th,table.confusion td,table.confusion th{border:1px solid #ccc;padding:2px 6px;text-align:right}
.pixelated,img.thumb{image-rendering:pixelated}.thumb{margin:0 3px;vertical-align:middle;border:1px solid #ccc}
.bar{display:flex;align-items:center;font-size:12px;margin:2px 0}.bar span{width:70px}
.bar i{display:inline-block;height:10px;background:#4c78a8;max-width:200px}.bar b{font-weight:normal;margin-left:6px}
.scorebar i{background:#f58518}.scorebar.top i{background:#e45756}
.big{font-size:18px}.filters{display:flex;flex-wrap:wrap;gap:16px}.filters figure{margin:0;max-width:420px}
.filters img{image-rendering:pixelated;max-width:400px}figcaption{font-size:12px}
.explanations{display:flex;flex-wrap:wrap;gap:18px}.explanations figure{margin:0;width:180px;font-size:12px}
.explanations img{image-rendering:pixelated;width:160px}.legend img{width:160px;height:10px;display:block}
.legend span{display:flex;justify-content:space-between;width:160px}
.demo-grids{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.demo-grids table{border-collapse:collapse}
.demo-grids td{width:9px;height:9px;padding:0;border:1px solid #eee}
.demo-grids table.numbers td{width:auto;height:auto;padding:1px 4px;font-size:11px;text-align:right;border:1px solid #ccc}
.demo-grids td.rf{outline:2px solid #e45756}.demo-grids h4{margin:2px 0;font-size:12px}
.demo-grids td.out{outline:2px solid #4c78a8}
"""

SCRIPT = r"""
(function(){
'use strict';
const D = JSON.parse(document.getElementById('report-data').textContent);
let current = 0, layer = 0, demoLayer = D.demoLayers.length ? D.demoLayers[0] : null;
let demoPos = [0, 0], timer = null;
const $ = id => document.getElementById(id);
const fmt = v => (Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0)) ? v.toExponential(2) : v.toFixed(3);
function el(tag, attrs, text){ const e = document.createElement(tag); for (const k in (attrs||{})) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; }

function buildChooser(){
  const c = $('chooser'); c.appendChild(el('span', {}, 'image: '));
  D.images.forEach((im, i) => { const b = el('button', {'class': 'image-choice', 'data-image': i}, im.name + (im.label !== null ? ' (' + im.label + ')' : ''));
    b.addEventListener('click', () => { current = i; render(); }); c.appendChild(b); });
  const s = $('layer-select');
  D.layers.forEach((name, i) => { s.appendChild(el('option', {value: i}, name)); });
  s.addEventListener('change', () => { layer = +s.value; renderActivations(); });
  const d = $('demo-layer');
  D.demoLayers.forEach(i => d.appendChild(el('option', {value: i}, D.layers[i])));
  d.addEventListener('change', () => { demoLayer = +d.value; demoPos = [0, 0]; renderDemo(); });
  $('demo-next').addEventListener('click', () => step(1));
  $('demo-prev').addEventListener('click', () => step(-1));
  $('demo-play').addEventListener('click', () => {
    if (timer) { clearInterval(timer); timer = null; $('demo-play').textContent = 'play'; }
    else { timer = setInterval(() => step(1), 600); $('demo-play').textContent = 'pause'; } });
}

function renderActivations(){
  const im = D.images[current], L = im.layers[layer];
  $('act-original').src = im.original;
  $('act-caption').textContent = im.name + (im.label !== null ? ', label ' + im.label : '') + ', predicted ' + im.predicted + (im.notes.length ? ' (' + im.notes.join('; ') + ')' : '');
  $('act-view').src = L.src;
  $('act-view').setAttribute('data-layer', layer); $('act-view').setAttribute('data-image', current);
  let text = 'volume ' + L.shape.join('x') + (L.shape.length === 3 && L.shown < L.shape[2] ? ' (first ' + L.shown + ' slices shown)' : '') +
    '; min ' + fmt(L.min) + ', max ' + fmt(L.max) + ', mean ' + fmt(L.mean);
  if (L.dead !== undefined) text += '; dead ReLUs ' + (100 * L.dead).toFixed(1) + '%';
  $('act-stats').textContent = text;
  const s = $('scores'); s.textContent = '';
  const order = im.probabilities.map((p, i) => i).sort((a, b) => im.probabilities[b] - im.probabilities[a]).slice(0, 10);
  order.forEach((c, n) => { const row = el('div', {'class': 'bar scorebar' + (n === 0 ? ' top' : '')});
    row.appendChild(el('span', {}, D.classes[c])); const bar = el('i'); bar.style.width = (200 * im.probabilities[c]).toFixed(1) + 'px';
    row.appendChild(bar); row.appendChild(el('b', {}, (100 * im.probabilities[c]).toFixed(1) + '% (score ' + fmt(im.scores[c]) + ')')); s.appendChild(row); });
}

function renderExplanations(){
  const im = D.images[current], box = $('explanations'); box.textContent = '';
  $('explain-class').textContent = im.predicted;
  im.explanations.forEach(e => { const f = el('figure');
    if (e.error) { f.appendChild(el('p', {}, e.name + ': not available (' + e.error + ')')); }
    else { f.appendChild(el('img', {src: e.src, alt: e.name, 'class': 'explanation'}));
      const lg = el('div', {'class': 'legend'}); lg.appendChild(el('img', {src: D.colorbars[e.cmap], alt: 'colour scale'}));
      const ends = el('span'); ends.appendChild(el('i', {}, fmt(e.cmap === 'signed' ? -Math.max(Math.abs(e.low), Math.abs(e.high)) : e.low)));
      ends.appendChild(el('i', {}, fmt(e.cmap === 'signed' ? Math.max(Math.abs(e.low), Math.abs(e.high)) : e.high))); lg.appendChild(ends); f.appendChild(lg); }
    f.appendChild(el('figcaption', {}, e.name)); box.appendChild(f); });
}

function heat(v, m){ const t = m > 0 ? Math.max(-1, Math.min(1, v / m)) : 0;
  return t >= 0 ? 'rgb(255,' + Math.round(255 - 180 * t) + ',' + Math.round(255 - 180 * t) + ')' : 'rgb(' + Math.round(255 + 180 * t) + ',' + Math.round(255 + 180 * t) + ',255)'; }

function numbers(title, grid){ const w = el('div'); w.appendChild(el('h4', {}, title)); const t = el('table', {'class': 'numbers'});
  grid.forEach(r => { const tr = el('tr'); r.forEach(v => tr.appendChild(el('td', {title: v.toFixed(6)}, v.toFixed(2)))); t.appendChild(tr); }); w.appendChild(t); return w; }
// The demo's sums in millionths, as integers: every sum shown is the exact sum of the figures shown beside it.
const micro = v => Math.round(v * 1e6), shown = n => (n / 1e6).toFixed(6);

function step(delta){ const d = D.images[current].demos[demoLayer]; if (!d) return;
  const n = d.out_hw[0] * d.out_hw[1]; let k = (demoPos[0] * d.out_hw[1] + demoPos[1] + delta + n) % n;
  demoPos = [Math.floor(k / d.out_hw[1]), k % d.out_hw[1]]; renderDemo(); }

function renderDemo(){
  const box = $('demo-grids'); box.textContent = '';
  if (demoLayer === null) { $('demo-sum').textContent = 'This network has no top-level CONV layer.'; return; }
  const d = D.images[current].demos[demoLayer];
  $('demo-layer').value = demoLayer;
  const [i, j] = demoPos, rows = [], cols = [];
  for (let a = 0; a < d.F[0]; a++) rows.push(i * d.S[0] + a * d.dilation[0]);
  for (let c = 0; c < d.F[1]; c++) cols.push(j * d.S[1] + c * d.dilation[1]);
  $('demo-position').textContent = 'output position (' + i + ', ' + j + ') of ' + d.out_hw[0] + 'x' + d.out_hw[1] + ', filter ' + d.k;
  let total = 0;
  const terms = [];
  for (let s = 0; s < d.depth; s++) {
    const X = d.input[s], Wt = d.weights[s];
    const win = rows.map(r => cols.map(c => X[r][c])), prod = win.map((r, a) => r.map((v, c) => v * Wt[a][c]));
    const part = micro(prod.flat().reduce((p, q) => p + q, 0)); total += part; terms.push(part);
    if (s >= d.shown_depth) continue;
    const m = Math.max(...X.flat().map(Math.abs)) || 1;
    const wrap = el('div'); wrap.appendChild(el('h4', {}, 'input slice ' + s + ' (padded ' + X.length + 'x' + X[0].length + ')'));
    const t = el('table', {'class': 'input-slice'});
    X.forEach((r, ri) => { const tr = el('tr'); r.forEach((v, ci) => { const td = el('td', {title: v.toFixed(4)}); td.style.background = heat(v, m);
      if (rows.includes(ri) && cols.includes(ci)) td.className = 'rf'; tr.appendChild(td); }); t.appendChild(tr); });
    wrap.appendChild(t); box.appendChild(wrap);
    box.appendChild(numbers('receptive field, slice ' + s, win));
    box.appendChild(numbers('filter ' + d.k + ', slice ' + s, Wt));
    box.appendChild(numbers('products (sum ' + shown(part) + ')', prod));
  }
  const outWrap = el('div'); outWrap.appendChild(el('h4', {}, 'output slice ' + d.k));
  const om = Math.max(...d.output.flat().map(Math.abs)) || 1, ot = el('table', {'class': 'output-slice'});
  d.output.forEach((r, ri) => { const tr = el('tr'); r.forEach((v, ci) => { const td = el('td', {title: v.toFixed(4)}); td.style.background = heat(v, om);
    if (ri === i && ci === j) td.className = 'out'; tr.appendChild(td); }); ot.appendChild(tr); });
  outWrap.appendChild(ot); box.appendChild(outWrap);
  const bias = micro(d.bias), value = total + bias, expected = d.output[i][j];
  const hidden = d.depth > d.shown_depth ? ' (' + (d.depth - d.shown_depth) + ' more depth slice' + (d.depth - d.shown_depth > 1 ? 's' : '') + ' not drawn: ' + shown(terms.slice(d.shown_depth).reduce((p, q) => p + q, 0)) + ')' : '';
  const p = $('demo-sum'); p.textContent = 'sum of products over ' + d.depth + ' depth slice' + (d.depth > 1 ? 's' : '') + hidden + ' = ' + shown(total) + ', plus bias ' + shown(bias) + ' = ' + shown(value) + '; volnet\'s output: ' + expected.toFixed(6) + ' (difference ' + (value / 1e6 - expected).toExponential(1) + ': the figures are rounded to 6 decimals, volnet adds in float32)';
  p.setAttribute('data-sum', value / 1e6); p.setAttribute('data-output', expected); p.setAttribute('data-position', i + ',' + j);
}

function render(){
  document.querySelectorAll('.image-choice').forEach((b, i) => b.classList.toggle('on', i === current));
  renderActivations(); renderExplanations(); renderDemo();
}
buildChooser(); render();
})();
"""
