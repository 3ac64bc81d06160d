"""``volnet report``: one self-contained HTML page about a checkpoint."""

from __future__ import annotations

import os

from .args import UsageError, refuse_writing_over_inputs


def cmd_report(args) -> int:
    import time

    from ..train.checkpoint import describe, read
    from ..viz.report import write_report

    refuse_writing_over_inputs(args.output, [args.checkpoint, *args.images], "-o/--output")
    if os.path.lexists(args.output) and not args.overwrite:
        raise UsageError(f"argument -o/--output: {args.output} already exists; replace it with --overwrite, or "
                         "choose another -o")
    print(f"reading {describe(args.checkpoint, read(args.checkpoint)[1])}")
    started = time.perf_counter()
    path = write_report(args.checkpoint, args.output, args.images, samples=args.samples, test_limit=args.test_limit)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB in {time.perf_counter() - started:.1f}s)")
    return 0
