"""The JSON-lines protocol between the `python -m models.<step>` jobs and the TypeScript activities that spawn them.

stdout carries only events, one JSON object per line, flushed: `{"event": "<name>", ...}`. A job ends with either a
`result` event (exit 0) or an `error` event `{"event": "error", "type": "<ExceptionClass>", "message": "..."}`
(exit non-zero). Everything else (warnings, tracebacks, library chatter) goes to stderr.

Libraries print to stdout on their own (the ONNX exporter does), so `run()` moves the real stdout to a private file
descriptor and points fd 1 and `sys.stdout` at stderr: stray output can never corrupt the event stream.
Under torchrun only rank 0 emits events; other ranks write their errors to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Sequence, TextIO

# Exit codes the TypeScript side can tell apart.
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SUPERVISOR_LOST = 3
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, like a shell reports a SIGTERM death

_events: TextIO | None = None  # the real stdout once run() has reserved it
_lock = threading.Lock()  # the supervisor thread may emit while the main thread does


class UsageError(Exception):
    """Bad command-line arguments (raised instead of argparse's print-and-exit)."""


class Terminated(BaseException):
    """SIGTERM/SIGINT arrived. A BaseException so that `except Exception` in library code cannot swallow it."""


class SupervisorLost(Exception):
    """The process named by --supervisor-pid is gone."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError, so a bad flag still ends with a JSON error line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def is_main_process() -> bool:
    # Read from the environment rather than torch.distributed: it is valid before the process group exists.
    return os.environ.get("RANK", "0") == "0"


def _reserve_stdout() -> None:
    global _events
    if _events is not None:
        return
    sys.stdout.flush()
    _events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def _json_safe(value: Any) -> Any:
    # NaN/Infinity are not JSON (JSON.parse rejects them): report them as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def emit(event: str, **fields: Any) -> None:
    """Print one event line on the reserved stdout (rank 0 only; a no-op elsewhere)."""
    if not is_main_process():
        return
    line = json.dumps(_json_safe({"event": event, **fields}), allow_nan=False)
    with _lock:
        out = _events or sys.stdout
        out.write(line + "\n")
        out.flush()


def _emit_error(exc: BaseException) -> None:
    fields = {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}
    if is_main_process():
        emit("error", **fields)
    else:
        print(json.dumps({"event": "error", "rank": int(os.environ.get("RANK", 0)), **fields}), file=sys.stderr)


def _on_signal(signum: int, _frame: Any) -> None:
    # Raising unwinds the main thread at the next bytecode, but it may be blocked inside a C++ collective whose peer
    # is gone: a daemon timer guarantees the exit anyway.
    timer = threading.Timer(5.0, os._exit, args=(EXIT_TERMINATED,))
    timer.daemon = True
    timer.start()
    raise Terminated(f"received {signal.Signals(signum).name}")


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a job's main(argv) under the protocol: reserved stdout, signal handling, JSON error, exit code."""
    _reserve_stdout()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    code = 0
    try:
        # Every step dies with the worker that started it (RECSYS_SUPERVISOR_PID, set by activities/python-process.ts):
        # a killed worker must not leave an evaluation or an export running with nobody to read its result.
        supervisor = os.environ.get("RECSYS_SUPERVISOR_PID")
        if supervisor:
            if not supervisor.isdigit() or int(supervisor) <= 0:
                raise UsageError(f"RECSYS_SUPERVISOR_PID must be a positive pid, got {supervisor!r}")
            start_supervisor_watch(int(supervisor))
        main(argv)
    except UsageError as exc:
        _emit_error(exc)
        code = EXIT_USAGE
    except Terminated as exc:
        _emit_error(exc)
        code = EXIT_TERMINATED
    except Exception as exc:  # noqa: BLE001 - every failure must become a JSON error line
        traceback.print_exc(file=sys.stderr)
        _emit_error(exc)
        code = EXIT_ERROR
    sys.stderr.flush()
    if _events is not None:
        _events.flush()
    sys.exit(code)


def start_supervisor_watch(pid: int, interval: float = 1.0) -> None:
    """Exit (code 3) as soon as process `pid` is gone, so training never outlives the worker that started it."""

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(interval):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                _emit_error(SupervisorLost(f"supervisor process {pid} is gone; exiting"))
                os._exit(EXIT_SUPERVISOR_LOST)
            except PermissionError:
                pass  # it exists, owned by another user

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
