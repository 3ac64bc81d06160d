"""``volnet check``: a learner's layer functions against volnet's kernels."""

from __future__ import annotations

from .args import UsageError


def cmd_check(args) -> int:
    from ..check import CheckUsageError, check
    try:
        report = check(args.file, cases=args.cases, time_limit=args.time_limit, api=args.api)
    except CheckUsageError as error:
        raise UsageError(str(error)) from None
    print(report.to_json() if args.json else report.text())
    return 0 if report.passed else 1
