"""Calling native extensions safely from an interpreter embedded in the JVM (PyFlink's ``thread`` mode).

In ``thread`` mode PyFlink runs the operators' Python on the TaskManager's own threads, which Python
did not start. Some native extensions do not work there: ONNX Runtime's Python module (pybind11)
hangs on import on such a thread, waiting for the interpreter lock that thread already holds. On a
thread Python started itself the same import and every call work.

:func:`on_python_thread` runs a function on such a thread (one per process, started on first use)
when the caller is on a thread Python did not start, and directly otherwise (the plain loop, the
tests, PyFlink's ``process`` mode), so the extra hand-over is paid only where it is needed.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def foreign_thread() -> bool:
    """Whether the calling thread was started outside Python (Python sees it as a dummy thread)."""
    return isinstance(threading.current_thread(), threading._DummyThread)


def on_python_thread(function, *args, **kwargs):
    """``function(*args, **kwargs)``, run on a thread Python started when the caller's was not."""
    if not foreign_thread():
        return function(*args, **kwargs)
    return (_executor or _start_executor()).submit(function, *args, **kwargs).result()


def _start_executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="impetus-native")
    return _executor
