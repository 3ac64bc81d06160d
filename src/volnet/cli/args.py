"""The parser's parts: argument types that refuse bad values in one line, the help formatter, the parser
class and :class:`UsageError`. Nothing here imports NumPy, so that ``volnet --help`` starts at once."""

from __future__ import annotations

import argparse
import math
import os

# The names the parser offers, written out so that `volnet --help` starts without importing NumPy;
# tests/test_cli_usage.py holds them equal to volnet.optim.OPTIMIZERS and volnet.zoo.ARCHITECTURES.
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
ARCHITECTURE_NAMES = ("notes", "lenet", "cifar-ref", "allconv", "lenet5", "lenet5-cifar", "alexnet", "alexnet-cifar",
                      "zfnet", "zfnet-cifar", "vgg16", "vgg16-cifar", "vgg19", "vgg19-cifar", "googlenet",
                      "googlenet-cifar", "resnet18", "resnet18-cifar", "resnet34", "resnet34-cifar", "resnet50",
                      "resnet50-cifar")
SCHEDULES = ("none", "step", "cosine")
REPORT_MAX_SAMPLES = 32  # volnet.viz.report.MAX_SAMPLES, written out so that --help does not import NumPy


class UsageError(Exception):
    """A bad combination of arguments: exit code 2."""


class Formatter(argparse.HelpFormatter):
    """Shows "(default: X)" for options that have a meaningful default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """Usage errors in one line naming the flag (argparse's own prints the whole usage block first).

    With ``record_given=True`` (a command's parser), the parsed arguments also hold ``words``, the command's
    words as written, and ``given``, the options written among them (sorted), which ``volnet train`` needs to
    refuse options that cannot apply and to start its workers with the same words.
    """

    def __init__(self, *args, record_given: bool = False, **kwargs):
        self.record_given = record_given
        self.options: list[str] = []  # every option string added (argparse adds -h while it starts)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        self.options.extend(action.option_strings)
        return action

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if self.record_given:
            words = list(args)
            parsed.words = words  # abbreviations are off, so each option appears as itself
            parsed.given = tuple(sorted(flag for flag in set(self.options)
                                        if any(w == flag or w.startswith(flag + "=") for w in words)))
        return parsed, extras

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def size(dims: int, example: str):
    """An argument type for ``HxW`` (dims=2) or ``HxWxD`` (dims=3) with positive sizes."""
    def parse(text: str) -> tuple[int, ...]:
        try:
            sizes = tuple(int(part) for part in text.lower().split("x"))
        except ValueError:
            sizes = ()
        if len(sizes) != dims:
            raise argparse.ArgumentTypeError(f"expected {dims} sizes like {example}, got {text!r}")
        if min(sizes) < 1:
            raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
        return sizes
    parse.__name__ = "HxW" if dims == 2 else "HxWxD"
    return parse


def number(kind, requirement: str, ok):
    """An argument type: ``kind(text)`` that must satisfy ``ok`` (finite, for floats)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {requirement}, got {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


positive_int = number(int, "an integer >= 1", lambda v: v >= 1)
count = number(int, "an integer >= 0", lambda v: v >= 0)
positive_float = number(float, "a finite number > 0", lambda v: v > 0)
non_negative_float = number(float, "a finite number >= 0", lambda v: v >= 0)
fraction = number(float, "a number in [0, 1)", lambda v: 0 <= v < 1)
decay_factor = number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)
scale = number(float, "a finite number >= 1", lambda v: v >= 1)
report_samples = number(int, f"an integer in 1..{REPORT_MAX_SAMPLES}", lambda v: 1 <= v <= REPORT_MAX_SAMPLES)


def refuse_writing_over_inputs(output, inputs, flag: str) -> None:
    """Refuse an ``output`` that is one of the ``inputs``: the same file by inode, through hard or symbolic links."""
    for given in inputs:
        try:
            same = os.path.samefile(output, given)
        except OSError:  # either does not exist (yet): not the same file
            continue
        if same:
            raise UsageError(f"argument {flag}: {output} is the input {given} (the same file); writing it would "
                             f"destroy the input, so choose another {flag}")
