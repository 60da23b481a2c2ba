"""User-facing errors.

Every error a user can cause (a bad path, a corrupt file, a wrong value) is a
:class:`MoadepthError` whose message is one readable sentence naming the thing
and the problem. Entry points print that sentence and exit non-zero instead of
showing a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence


class MoadepthError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(MoadepthError):
    """A configuration file or value is invalid."""


class CheckpointError(MoadepthError):
    """A checkpoint is missing, corrupt, or for another architecture."""


class DataError(MoadepthError):
    """A dataset, image or bag cannot be read or has the wrong content."""


UNTRAINED_WARNING = ("RUNNING AN UNTRAINED NETWORK: its depth is meaningless and must never feed a costmap; "
                     "pass a trained checkpoint for real use")


class UntrainedError(MoadepthError):
    """An untrained network was asked for without ``allow_untrained``."""


class DeviceError(MoadepthError):
    """The requested device or precision is not available."""


def cli_entry(main: Callable[[Sequence[str] | None], int], prog: str | None = None):
    """Wrap ``main(argv) -> int`` so user errors end in one sentence and exit 2."""

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except MoadepthError as exc:
            name = prog or getattr(main, "__module__", "moadepth").rsplit(".", 1)[-1]
            print(f"{name}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """Hide what third-party code logs below ERROR on the root logger while it runs: open_clip's
    "no pretrained weights" for a deliberate random init, the ONNX Runtime quantiser's
    pre-processing hint. Neither is the user's concern, and both would read like problems."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
