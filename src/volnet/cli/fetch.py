"""``volnet fetch``: download a data set and verify its checksums."""

from __future__ import annotations


def cmd_fetch(args) -> int:
    from ..data import fetch

    folder = fetch(args.name, root=args.root)
    print(f"{args.name}: files verified in {folder}")
    return 0
