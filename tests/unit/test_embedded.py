"""impetus.embedded: calls from threads Python did not start go to one it did; other calls stay where they are."""

import _thread
import threading

import pytest

from impetus.embedded import foreign_thread, on_python_thread


def where(value):
    return value, threading.current_thread().name, threading.get_ident()


def from_unregistered_thread(function):
    """Run ``function`` on a thread started below the threading module (it sees a dummy thread there,
    as it does on the JVM's threads in PyFlink's thread mode); its result or exception."""
    done, box = threading.Event(), {}

    def run():
        try:
            box["result"] = function()
        except BaseException as err:  # handed back to the test
            box["error"] = err
        finally:
            done.set()

    _thread.start_new_thread(run, ())
    assert done.wait(30)
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_a_call_from_a_thread_python_started_runs_in_place():
    assert not foreign_thread()
    assert on_python_thread(where, 7) == (7, threading.current_thread().name, threading.get_ident())


def test_a_call_from_a_foreign_thread_runs_on_the_helper_thread_and_returns_its_result():
    assert from_unregistered_thread(foreign_thread) is True
    (value, name, ident), caller = from_unregistered_thread(lambda: (on_python_thread(where, 7), threading.get_ident()))
    assert value == 7 and name.startswith("impetus-native") and ident != caller
    # one helper thread, reused
    assert from_unregistered_thread(lambda: on_python_thread(where, 8))[2] == ident


def test_an_error_on_the_helper_thread_reaches_the_caller():
    def fails():
        raise ValueError("model does not load")

    with pytest.raises(ValueError, match="model does not load"):
        from_unregistered_thread(lambda: on_python_thread(fails))
