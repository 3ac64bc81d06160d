"""``volnet eval``: a checkpoint's accuracy, loss, confusion matrix and per-class figures on a test set."""

from __future__ import annotations

from .args import UsageError


def cmd_eval(args) -> int:
    import json

    import numpy as np

    from ..analysis import require_fit
    from ..ops.losses import LOSSES
    from ..train import predict
    from ..train.checkpoint import describe, load_model
    from ..train.loop import check_labelled, class_weights
    from ..train.metrics import classification
    from ..train.setup import SetupError, checkpoint_data

    net, normalizer, _, metadata = load_model(args.checkpoint)
    reading = describe(args.checkpoint, metadata)
    if not args.json:
        print(f"reading {reading}")
    data = metadata.get("data", {})
    name = args.data or data.get("name")
    try:
        test = checkpoint_data(metadata, args.split, name=args.data, root=args.root)
    except SetupError as error:
        raise UsageError(str(error)) from None
    batch = min(args.batch_size, len(test))
    require_fit(net, batch, "inference", what=f"evaluating {args.checkpoint}", batch_flag="--batch-size")
    check_labelled(net, test.images, test.labels, "evaluation")
    scores = predict(net, test.images, batch, transform=normalizer)  # (N, classes), a net ending in GAP too
    class_weight = metadata.get("train", {}).get("class_weight")  # the run's --class-weight weighs the loss here too
    loss = float(LOSSES[metadata.get("train", {}).get("loss", "softmax")](
        scores, test.labels, **class_weights(class_weight, test.labels))[0])
    classes = data.get("classes") or test.classes
    figures = classification(scores, test.labels, classes, top_k=args.top_k, loss=loss)
    weighted = {}
    if class_weight is not None:
        w = np.asarray(class_weight)[test.labels]
        weighted = {"class_weight": class_weight,
                    "weighted_accuracy": float((w * (scores.argmax(axis=1) == test.labels)).sum() / w.sum())}
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "reading": reading, "data": name, "split": args.split,
                          **figures.to_dict(), **weighted}, indent=2))
        return 0
    epoch = f" (epoch {metadata['position']['epoch']})" if "position" in metadata else ""
    print(f"{args.checkpoint}{epoch} on {name} {args.split}: accuracy {figures.accuracy:.2%}, "
          f"loss {loss:.4f}, {len(test)} images")
    print(figures.table())
    if weighted:
        print(f"with the run's class weights (--class-weight): the loss above is their weighted mean; weighted "
              f"accuracy {weighted['weighted_accuracy']:.2%} (balanced accuracy, the mean per-class recall, is "
              f"{figures.recall.mean():.2%})")
    return 0
