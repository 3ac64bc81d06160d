"""``volnet export``: a checkpoint as an ONNX model."""

from __future__ import annotations

from .args import refuse_writing_over_inputs


def cmd_export(args) -> int:
    from ..export import input_description, to_onnx
    from ..train.checkpoint import describe, load_model

    refuse_writing_over_inputs(args.output, [args.checkpoint], "MODEL.onnx")
    net, normalizer, tensors, metadata = load_model(args.checkpoint)
    del tensors  # copied into net: the export's memory is free of them
    print(f"reading {describe(args.checkpoint, metadata)}")
    included = normalizer if args.raw_pixels else None
    to_onnx(net, args.output, normalizer=included, layout=args.layout,
            classes=metadata.get("data", {}).get("classes"), probabilities=args.probabilities)
    print(f"wrote {args.output} (ONNX opset 17, IR version 8)")
    print(f"  {input_description(net, included, args.layout)}")
    if normalizer is not None and not args.raw_pixels:
        print(f"  normalise first: (pixels - {_numbers(normalizer.mean)}) / {_numbers(normalizer.std)} per channel, "
              "or export with --raw-pixels to put that in the graph")
    elif normalizer is None and args.raw_pixels:
        print("  (this checkpoint was trained without normalisation: the graph takes the pixels as they are)")
    shape = net.output_shape
    if len(shape) == 3 and args.layout == "nchw":
        shape = (shape[2], shape[0], shape[1])
    if len(shape) == 1:
        what = " class probabilities (softmax)" if args.probabilities else " class scores (before softmax)"
    else:
        what = f" ({args.layout.upper()}{', softmax over the depth' if args.probabilities else ''})"
    print(f"  output: float32 N x {' x '.join(map(str, shape))}{what}")
    return 0


def _numbers(values) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
