"""The `mpunet` command: segment, evaluate, make phantoms, manage models, run the demo."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import List, Optional

from MPUNetCore import __version__
from MPUNetCore.allocator import reexec_with_tuned_allocator
from MPUNetCore.cli import demo, evaluate, models, phantom, segment

COMMANDS = (segment, evaluate, phantom, models, demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `mpunet` with one sub-command per module in `COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="mpunet",
        description="MPU-Net liver and liver-tumour segmentation of CT (research use, not for clinical use).",
    )
    parser.add_argument("--version", action="version", version=f"mpunet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run `mpunet` with `argv` (default: the process arguments) and return the exit code.

    User errors (bad paths, bad files, unknown models) end in one line on stderr and exit code 2;
    an interrupted run exits 130 (143 for SIGTERM) and leaves no partial output.
    """
    if argv is None:  # a process of its own: run with the allocator set-up (once; see MPUNetCore.allocator)
        reexec_with_tuned_allocator()
    args = build_parser().parse_args(argv)
    previous = _catch_sigterm()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt as stop:
        print("mpunet: interrupted; no partial output was left", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as error:
        print(f"mpunet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:  # torch.OutOfMemoryError is a RuntimeError
        from MPUNetCore.memory import is_out_of_memory, memory_error_message

        if not is_out_of_memory(error):
            raise
        print(f"mpunet {args.command}: error: {memory_error_message(error)}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl+C so that temporary files and output reservations are cleaned up."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _catch_sigterm():
    """Turn SIGTERM into `Terminated` (main thread only); returns the previous handler, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":
    sys.exit(main())
