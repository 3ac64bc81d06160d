"""``volnet predict``: the top classes for image files, or a sliding window's average and score map."""

from __future__ import annotations

import sys
from pathlib import Path

from .args import UsageError, refuse_writing_over_inputs


def cmd_predict(args) -> int:
    if args.slide:
        return _predict_sliding(args)
    if args.heatmap:
        raise UsageError("--heatmap needs --slide (the score map comes from sliding the net over the image)")
    from ..train.model import load

    model = load(args.checkpoint)
    k = min(args.top_k, len(model.classes))
    writer = _prediction_writer(args, k)
    bar = _image_progress(args.images)

    def on_image(prediction):
        writer(prediction)
        if bar is not None:
            bar.update(1)

    try:
        model.predict_files(args.images, on_image=on_image)
    finally:
        if bar is not None:
            bar.close()
    return 0


def _prediction_writer(args, k: int):
    """What prints one image's prediction: a line of text, a JSON Lines record (--json) or a CSV row (--csv)."""
    import csv
    import json

    if args.json and args.csv:
        raise UsageError("--json and --csv: choose one")
    if args.json:
        def write(prediction):
            print(json.dumps({"path": str(prediction.path), "note": prediction.note,
                              "top": [{"class": name, "probability": p} for name, p in prediction.top(k)]}),
                  flush=True)
    elif args.csv:
        rows = csv.writer(sys.stdout, lineterminator="\n")
        rows.writerow(["path", *(f"{field}_{i}" for i in range(1, k + 1) for field in ("class", "probability")),
                       "note"])

        def write(prediction):
            rows.writerow([str(prediction.path), *(value for pair in prediction.top(k) for value in pair),
                           prediction.note])
            sys.stdout.flush()
    else:
        def write(prediction):
            if prediction.note:  # how the image was changed to fit the net: RGBA to grayscale, 640x480 to 28x28...
                print(f"{prediction.path}: {prediction.note}")
            print(f"{prediction.path}: " + ", ".join(f"{name} {p:.1%}" for name, p in prediction.top(k)),
                  flush=True)
    return write


def _image_progress(paths):
    """A tqdm bar on stderr when a folder is predicted and stderr is a terminal (else None)."""
    if not any(Path(path).is_dir() for path in paths) or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    from ..data.folder import image_paths

    return tqdm(total=len(image_paths(paths)), unit="image", file=sys.stderr, leave=False, dynamic_ncols=True)


def _predict_sliding(args) -> int:
    import numpy as np

    from ..convert import slide, sliding_size
    from ..ops import softmax
    from ..data.images import read_image_with_note
    from ..train.checkpoint import load_model

    if args.json or args.csv:
        raise UsageError("--json and --csv write plain predictions; leave out --slide")
    net, normalizer, _, metadata = load_model(args.checkpoint)
    classes = metadata.get("data", {}).get("classes") or [str(i) for i in range(net.output_shape[-1])]
    H, W, D = net.input_shape
    if args.heatmap and len(args.images) != 1:
        raise UsageError("--heatmap draws one image; pass a single IMAGE")
    if args.heatmap:
        refuse_writing_over_inputs(args.heatmap, [args.checkpoint, *args.images], "--heatmap")
    size = sliding_size(net, args.scale)
    # before any image is read: refuse a scale the machine cannot hold
    from ..convert.sliding import require_sliding_memory

    require_sliding_memory(net, args.scale, len(args.images), heatmap=bool(args.heatmap))
    read = [read_image_with_note(path, size=size, grayscale=D == 1) for path in args.images]
    for path, (_, note) in zip(args.images, read):
        if note:  # say how an image was changed to fit the net: RGBA to grayscale, 640x480 to 28x28...
            print(f"{path}: {note}")
    raw = np.stack([volume for volume, _ in read])
    images = normalizer(raw) if normalizer is not None else raw
    score_map, scores = slide(net, images)
    print(f"sliding the {H}x{W} net over {size[0]}x{size[1]} images: "
          f"{score_map.shape[1]}x{score_map.shape[2]} positions averaged")
    probabilities = softmax(scores.reshape(len(images), -1))  # a net ending in GAP gives N x 1 x 1 x classes
    k = min(args.top_k, probabilities.shape[1])
    for path, p in zip(args.images, probabilities):
        best = np.argsort(p)[::-1][:k]
        print(f"{path}: " + ", ".join(f"{classes[c]} {p[c]:.1%}" for c in best))
    if args.heatmap:
        from ..viz.heatmap import heatmap_with_legend

        target = args.heat_class if args.heat_class is not None else int(probabilities[0].argmax())
        if not 0 <= target < len(classes):
            raise UsageError(f"--heat-class must be in 0..{len(classes) - 1}")
        picture = heatmap_with_legend(raw[0], softmax(score_map[0])[..., target], label=f"P({classes[target]})")
        _save_png(picture, args.heatmap)
        print(f"wrote {args.heatmap}: where the net sees class {classes[target]}")
    return 0


def _save_png(picture, path) -> None:
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)
