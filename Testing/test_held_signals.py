"""Signals held where an interruption would leave something behind, and library chatter's redirect of descriptor 2
undone whenever an interruption lands: real signals sent to this process, no stand-ins."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from pathlib import Path

import pytest
import SimpleITK  # noqa: F401 - imported before the sweep below sends signals into the block's first lines

from MedFusionLib.held_signals import SignalHold
from MedFusionLib.quiet import quiet_libraries, restore_native_stderr


@pytest.fixture
def another_thread():
    # Torch, ITK and the registration check all run threads: the kernel may hand a signal to any of them.
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join()


def _spin(seconds: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_held_even_when_another_thread_receives_it(another_thread, number):
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # as the CLI does: SIGTERM unwinds
    try:
        hold = SignalHold().start()
        try:
            os.kill(os.getpid(), number)
            _spin()  # the handler has had every chance to run inside the hold
            interrupted_inside = False
        except KeyboardInterrupt:
            interrupted_inside = True
        with pytest.raises(KeyboardInterrupt):
            hold.release()
            _spin()
        assert not interrupted_inside
        assert hold.arrived == [number]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_hold_that_does_not_deliver_only_notes_the_signal(another_thread):
    with SignalHold(deliver=False) as hold:
        os.kill(os.getpid(), signal.SIGINT)
        _spin()
    _spin()  # nothing is raised afterwards either
    assert hold.arrived == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_nothing_is_held_or_changed():
    seen = {}

    def body():
        with SignalHold() as hold:
            seen["handler"] = signal.getsignal(signal.SIGINT)
        seen["arrived"] = hold.arrived

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == {"handler": signal.default_int_handler, "arrived": []}


def test_in_a_sub_interpreter_the_hold_holds_nothing_and_does_not_fail():
    import MedFusionLib.held_signals as module

    # In a child process: a sub-interpreter leaves this one's thread state so that torch's autograd refuses to run.
    inner = textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("held_signals", {str(Path(module.__file__).resolve())!r})
        held_signals = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(held_signals)
        with held_signals.SignalHold() as hold:
            pass
        assert hold.arrived == []
    """)
    code = textwrap.dedent(f"""
        import sys
        for name in ("_interpreters", "_xxsubinterpreters"):  # CPython's own module, renamed in 3.13
            try:
                interpreters = __import__(name)
                break
            except ImportError:
                continue
        else:
            sys.exit(3)
        interpreter = interpreters.create()
        interpreters.run_string(interpreter, {inner!r})  # raises if the code raised
        interpreters.destroy(interpreter)
    """)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if child.returncode == 3:
        pytest.skip("this Python has no sub-interpreters module")
    assert child.returncode == 0, child.stderr


def _descriptor_2():
    status = os.fstat(2)
    return status.st_dev, status.st_ino


def _interrupt_at_line_event(target: int):
    """Run an empty quiet_libraries() block, sending SIGINT to this process at its ``target``-th line event (in
    any frame: ours, contextlib's, numpy's); returns whether the signal was sent."""
    events = [0]

    def tracer(frame, event, arg):
        if event == "line":
            events[0] += 1
            if events[0] == target:
                os.kill(os.getpid(), signal.SIGINT)
        return tracer

    sys.settrace(tracer)
    try:
        with quiet_libraries():
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(None)
    try:
        _spin(0.002)  # a signal sent in the block's last lines is delivered by now
    except KeyboardInterrupt:
        pass
    return events[0] >= target


def sweep_interrupts_through_the_stderr_redirect() -> int:
    """SIGINT at each line event of quiet_libraries() in turn; descriptor 2 checked after each; returns the count."""
    with quiet_libraries():  # first use done untraced: the standard library's one-time set-up (tempfile's temp
        pass  # folder under a plain lock) is not ours to make interrupt-safe
    before = _descriptor_2()
    target = 1
    while _interrupt_at_line_event(target):
        restore_native_stderr()  # what the CLI does before printing its one sentence
        assert _descriptor_2() == before, f"descriptor 2 still redirected after an interrupt at line event {target}"
        target += 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    return target - 1


def test_an_interrupt_anywhere_in_the_stderr_redirect_leaves_descriptor_2_restorable():
    # In a child process: an exception raised from a trace function at a `try:` line skips that try's handlers
    # (a tracing artefact, not how a signal lands), which can leave quiet_libraries()'s lock taken for good, and
    # later tests in this process that read files from worker threads (batch) would wait on it forever.
    here = Path(__file__).resolve().parent
    code = "import test_held_signals as t; print(t.sweep_interrupts_through_the_stderr_redirect())"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(here), str(here.parent / "MedFusion")]))
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=here,
                           env=env)
    assert child.returncode == 0, child.stderr[-3000:]
    assert int(child.stdout.split()[-1]) > 20  # the sweep covered the whole redirect, not just its first lines
