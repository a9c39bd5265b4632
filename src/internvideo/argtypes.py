"""Argument types for numeric command-line options: one place that refuses nonsense with one line.

``float("nan")``, ``float("inf")`` and ``0`` parse fine, and would then run a
command with a meaningless setting (a window of NaN seconds, zero workers'
worth of batch). Each option says the range it means, for example
``parser.add_argument("--window", type=argtypes.positive_float)``; argparse then
prints ``argument --window: expected a finite number > 0, got 'nan'`` and exits 2.

Imports nothing of the package, so every layer may use it.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["OneLineParser", "number", "positive_int", "nonnegative_int", "positive_float", "nonnegative_float", "fraction",
           "unit_interval", "percent", "port"]


def number(kind: type = float, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> Callable[[str], int | float]:
    """An argparse ``type`` parsing ``kind`` (int or float) within the given bounds; never NaN or infinite."""
    bounds = [f"{'>' if low_open else '>='} {low:g}" if low is not None else "",
              f"{'<' if high_open else '<='} {high:g}" if high is not None else ""]
    wanted = ("an integer" if kind is int else "a finite number") + (
        " " + " and ".join(b for b in bounds if b) if any(bounds) else "")

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        ok = math.isfinite(value)
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type by it in some messages
    return parse


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``internvideo: error: message``), as every other user error
    is; the usage block it would print first is what ``--help`` shows."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see {self.prog} --help)\n")


positive_int = number(int, low=1)
nonnegative_int = number(int, low=0)
positive_float = number(float, low=0, low_open=True)
nonnegative_float = number(float, low=0)
fraction = number(float, low=0, high=1, low_open=True)  # (0, 1]: a threshold that must keep something
unit_interval = number(float, low=0, high=1)
percent = number(float, low=0, high=100, low_open=True)
port = number(int, low=1, high=65535)
