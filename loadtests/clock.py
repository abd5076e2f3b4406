"""Sleeping until a moment, to the tens of microseconds, inside gevent.

gevent's timers wake up to a millisecond late (the event loop's poll takes its
timeout in whole milliseconds), and an open-loop schedule at thousands of requests
per second would carry that lag on every request. A Linux timerfd set to the
absolute moment is a file descriptor the loop polls like any socket: it becomes
readable when the kernel's high-resolution timer fires. Elsewhere, gevent.sleep.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time

import gevent
from gevent.hub import get_hub

CLOCK_MONOTONIC = 1  # what time.perf_counter_ns reads on Linux
TFD_NONBLOCK = 0o4000
TFD_CLOEXEC = 0o2000000
TFD_TIMER_ABSTIME = 1
READ = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Sleeper:
    """`until(ns)` returns at perf_counter_ns() >= ns, yielding to other greenlets."""

    def __init__(self) -> None:
        self._fd = -1
        libc_name = ctypes.util.find_library("c")
        if libc_name and hasattr(os, "eventfd"):  # Linux
            self._libc = ctypes.CDLL(libc_name, use_errno=True)
            fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
            if fd >= 0:
                self._fd = fd
                self._watcher = get_hub().loop.io(fd, READ)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    def until(self, moment_ns: int) -> None:
        if self._fd < 0:
            gevent.sleep(max(0.0, (moment_ns - time.perf_counter_ns()) / 1e9))
            return
        spec = _Itimerspec(
            _Timespec(0, 0), _Timespec(moment_ns // 1_000_000_000, moment_ns % 1_000_000_000)
        )
        if self._libc.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None):
            # Could not arm it: gevent's own timer, late by up to a millisecond.
            gevent.sleep(max(0.0, (moment_ns - time.perf_counter_ns()) / 1e9))
            return
        get_hub().wait(self._watcher)
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)  # disarm: the expiry count

    def close(self) -> None:
        if self._fd >= 0:
            self._watcher.close()
            os.close(self._fd)
            self._fd = -1
