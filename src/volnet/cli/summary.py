"""``volnet summary``: an architecture's volumes, parameters, FLOPs, receptive fields and memory."""

from __future__ import annotations

from pathlib import Path

from .args import UsageError


def cmd_summary(args) -> int:
    import json
    from dataclasses import asdict

    from ..analysis import analyze, batch_fit
    from ..shapes import ShapeError
    from ..spec import SpecError
    from ..zoo import UnknownArchitecture, build_any

    try:
        is_file = Path(args.arch).is_file()
    except OSError:  # a notation longer than a file name may be ("File name too long")
        is_file = False
    if is_file:  # a checkpoint: the architecture its metadata records, built without weights
        from ..net import Sequential
        from ..train.checkpoint import read

        if args.input or args.classes:
            raise UsageError("--input and --classes do not apply to a checkpoint, whose architecture is fixed")
        metadata = read(args.arch)[1]
        net = Sequential.from_config(metadata["architecture"], allocate=False)
        for index in metadata.get("train", {}).get("frozen", []):  # --freeze: no optimizer state, no gradients
            net.layers[index - 1].trainable = False
        if args.optimizer is None and "optimizer" in metadata:
            args.optimizer = metadata["optimizer"]["config"]["name"]
    else:
        try:
            net = build_any(args.arch, args.input and tuple(args.input), args.classes, allocate=False)
        except (UnknownArchitecture, SpecError) as error:
            raise UsageError(f"argument NAME|NOTATION: {error}") from None
        except ShapeError as error:
            H, W, D = args.input or (0, 0, 0)
            if H <= 4 < D:  # 1x28x28 or 3x32x32: written channels first
                raise ShapeError(f"{error}; volnet volumes are H x W x D (depth last): for {H} channels of {W}x{D} "
                                 f"pass --input {W}x{D}x{H}") from None
            raise
    optimizer = {"none": None, None: "momentum"}.get(args.optimizer, args.optimizer)
    report = analyze(net, batch=args.batch, dtype=args.dtype, optimizer=optimizer)
    fits = {mode: batch_fit(net, args.budget, optimizer=optimizer, dtype=args.dtype, mode=mode)
            for mode in ("train", "inference")} if args.budget else {}
    if args.json:
        document = report.to_dict()
        if fits:
            document["budget"] = {mode: asdict(fit) for mode, fit in fits.items()}
        print(json.dumps(document, indent=2))
        return 0
    print(report.table())
    for mode, fit in fits.items():
        print(f"\nlargest {mode} batch within {args.budget}: {fit.batch} ({fit.explanation})")
    return 0
