"""The ``volnet`` command. Argument parsing and printing only; the work is in the library.

``args`` holds the argument types and the parser class, ``parser`` the commands' options, and one module
per command (``train``, ``evaluate``, ``predict``, ``report``, ``summary``, ``export``, ``check``, ``fetch``)
turns its flags into library calls and prints what they return.

Exit codes: 0 success, 1 failure (bad data, diverged training, unreadable
checkpoint...), 2 usage error (one line naming the flag), 130 interrupted by
Ctrl-C and 143 by SIGTERM (128 + the signal; the message says what was saved).
"""

from __future__ import annotations

import os
import sys

from .. import runtime
from .args import UsageError
from .parser import build_parser

__all__ = ["main", "build_parser"]


OUT_OF_MEMORY_HINTS = {
    "train": "lower --batch-size or choose a smaller --arch",
    "predict": "lower --scale or pass fewer images at once",
    "eval": "evaluate on a machine with more memory",
    "summary": "choose a smaller --arch",
}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    runtime.configure_from_environment()  # freed memory kept for reuse, unless VOLNET_KEEP_FREED_MEMORY=0
    try:
        return args.run(args)
    except UsageError as error:
        # one line; a notation error adds the notation with a caret under the column at fault
        first, *pointer = str(error).split("\n")
        print(f"volnet {args.command}: error: {first} (see volnet {args.command} --help)", *pointer, sep="\n",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except (ValueError, OSError, ImportError) as error:  # ShapeError, DataError, CheckpointError... too
        print(f"volnet {args.command}: error: {error}", file=sys.stderr)
        return 1
    except (MemoryError, OverflowError) as error:  # past volnet's own estimates: still one line, no traceback
        what = "out of memory" if isinstance(error, MemoryError) else "a size too large to compute with"
        hint = OUT_OF_MEMORY_HINTS.get(args.command, "ask for less work at once")
        print(f"volnet {args.command}: error: {what} while running {args.command} "
              f"({type(error).__name__}: {error or 'no details'}); {hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"volnet {args.command}: interrupted", file=sys.stderr)
        return 130
