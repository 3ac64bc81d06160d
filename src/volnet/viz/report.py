"""One self-contained HTML page about a checkpoint: architecture, training, results, activations,
filters, explanations and the notes' CONV demo.

:func:`build_report` returns the page as a string; :func:`write_report` writes it atomically.
Scripts, styles and images are inline (images as ``data:`` addresses), so the file opens
offline and can be mailed. The pictures come from :mod:`volnet.viz` as arrays; this module
only lays them out. The page's skeleton (``assets/report.html``, a :class:`string.Template`),
its style and script, and the fixed text of sections 4, 6 and 7 are package data in ``assets/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template

import numpy as np

from ..analysis import analyze
from ..resources import format_bytes
from ..ops import softmax
from ..train.loop import predict
from ..train.metrics import classification
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


def _asset(name: str) -> str:
    """The text of ``assets/name``, the page's skeleton, style, script and fixed sections, inserted as it is."""
    return (files(__package__) / "assets" / name).read_text(encoding="utf-8")


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

def _results(test, scores, classes, missing: str) -> str:
    """The confusion matrix with each class's precision, recall and F1, top-k accuracy and the most confused
    pairs: the figures ``volnet eval`` prints (:func:`volnet.train.metrics.classification`)."""
    if test is None:
        return f"<p>{escape(missing)}, so there are no results to show.</p>"
    labels = test.labels
    C = len(classes)
    figures = classification(scores, labels, classes)
    confusion, predictions, accuracy = figures.confusion, scores.argmax(axis=1), figures.accuracy
    per_class = figures.recall  # the share of each true class predicted right
    top = confusion.max() or 1
    head = "".join(f"<th>{escape(c)}</th>" for c in classes)
    body = []
    for t in range(C):
        cells = "".join(
            f'<td style="background:rgba(76,120,168,{0.1 + 0.9 * confusion[t, p] / top if confusion[t, p] else 0:.2f})"'
            f' title="true {escape(classes[t])}, predicted {escape(classes[p])}: {confusion[t, p]}">'
            f"{confusion[t, p] or ''}</td>" for p in range(C))
        body.append(f"<tr><th>{escape(classes[t])}</th>{cells}<td class='acc'>{figures.precision[t]:.3f}</td>"
                    f"<td class='acc'>{figures.recall[t]:.3f}</td><td class='acc'>{figures.f1[t]:.3f}</td></tr>")
    macro = "".join(f"<td class='acc'>{values.mean():.3f}</td>"
                    for values in (figures.precision, figures.recall, figures.f1))
    matrix = (f'<table class="confusion"><tr><th>true \\ predicted</th>{head}<th>precision</th><th>recall</th>'
              f"<th>F1</th></tr>" + "".join(body) + f"<tr><th>macro</th><td colspan='{C}'></td>{macro}</tr></table>")
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
    top_k = "; ".join(f"top-{k} {v:.2%}" for k, v in figures.top_k.items())
    return (f'<p class="big">accuracy {accuracy:.2%} on {len(labels):,} test images</p><p>{top_k}</p>'
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
    scores = predictions = grads = None
    if test is not None:
        scores = predict(net, prepare(test.images))
        predictions = scores.argmax(axis=1)
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
        ("results", "3. Results on the test split", _results(test, scores, classes, missing)),
        ("activations", "4. One image through the net", left_out + _asset("activations.html")),
        ("filters", "5. Filters and weights", _filters(net, grads or {})),
        ("explain", "6. Why this class", _asset("explain.html")),
        ("conv-demo", "7. The CONV demo with this net's numbers", _asset("conv-demo.html")),
    ]
    epoch = metadata.get("position", {}).get("epoch")
    title = f"volnet report: {Path(checkpoint).name}" + (f" (epoch {epoch})" if epoch else "")
    refresh = f'<meta http-equiv="refresh" content="{int(reload_seconds)}">' if reload_seconds else ""
    body = "".join(f'<section id="{key}"><h2>{heading}</h2>{html}</section>' for key, heading, html in sections)
    nav = " ".join(f'<a href="#{key}">{heading}</a>' for key, heading, _ in sections)
    # no "<" or ">" in the inline JSON: a name such as "<!--<script>" would otherwise change how the page parses
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e")
    page = Template(_asset("report.html").removesuffix("\n")).substitute(
        refresh=refresh, title=escape(title), style=_asset("report.css"), nav=nav, body=body, payload=payload,
        script=_asset("report.js"))
    return _valid_utf8(page)


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

