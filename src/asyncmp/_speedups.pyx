# cython: language_level=3, binding=True, embedsignature=False
"""asyncmp's compiled core: the hot part of the channel, in Cython.

Design note. The pure-Python modules are the reference and the fallback: `_channel_core.py`
(``_PureChannelCore``, the hot half of a channel's shared state), `_reply.py`
(``ReplyContext``, `settle`, `reclaim`) and `_channel.py` (``Client.send``, ``Server.wait``).
This module implements exactly their semantics — the same fields, under the same names, the
same invariants (see those modules' docstrings) — with what pure Python cannot do:

- ``send()`` returns an awaitable object (`_SendOp`) instead of a coroutine, and
  ``wait()`` a `_WaitOp`; both implement the ``am_send`` slot, so a result that is ready is
  returned without raising ``StopIteration``, and no coroutine frame is made per request.
  They are ``collections.abc.Coroutine`` s (``send``, ``throw``, ``close``, ``__await__``),
  so ``asyncio.create_task``, ``gather``, anyio and trio accept them;
- the running asyncio loop is looked up through the address of the running-loop holder
  that asyncio keeps in the thread state (on CPython 3.10-3.11 ``_get_running_loop()``
  makes a ``getpid()`` system call each time; `running_loop` says why the answer is the
  same); it holds no reference, so no loop outlives its use, and a fork clears it;
- the channel's lock (`Mutex`) is a flag guarded by the GIL, with a ``PyThread`` lock only
  to wait on when it is contended, and the same Python API as a ``threading.Lock`` for the
  pure-Python code that shares it;
- replies and fails count their answers with a C integer (the GIL makes it atomic).

Only asyncio requesters and servers take the compiled paths: trio tasks, threads and
`PendingReply` go through the pure-Python code, which runs unchanged on these objects.
"""

import asyncio
import collections.abc
import os
import sys
import threading
import time
import warnings
from collections import deque

cimport cython
from cpython.dict cimport PyDict_DelItem, PyDict_GetItem, PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.object cimport PyObject, PyTypeObject
from cpython.pystate cimport PyThreadState_GetDict
from cpython.pythread cimport (
    NOWAIT_LOCK,
    PY_LOCK_ACQUIRED,
    WAIT_LOCK,
    PyLockStatus,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
    PyThread_type_lock,
)
from cpython.ref cimport Py_DECREF, Py_INCREF

from asyncmp._errors import (
    AlreadyReplied,
    ClientsDisappeared,
    Closed,
    NoReply,
    ServerDisappeared,
    WouldBlock,
)
from asyncmp._lowlevel._backend import anyio_cancel_pending, library_mark
from asyncmp._lowlevel._finalize import finalize
from asyncmp._lowlevel._outcome import PENDING, Failure
from asyncmp._lowlevel._waitqueue import WaitQueue
from asyncmp._lowlevel._wake import check_timeout, deliver, wake

cdef extern from "pythread.h":
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock, long long, int) nogil
    unsigned long PyThread_get_thread_ident()
    const long long PY_TIMEOUT_MAX
    const PyLockStatus PY_LOCK_INTR
    const PyLockStatus PY_LOCK_FAILURE

cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    ctypedef PySendResult (*sendfunc)(PyObject*, PyObject*, PyObject**)
    PySendResult PyIter_Send(PyObject*, PyObject*, PyObject**)
    int PyErr_CheckSignals() except -1

cdef extern from *:
    """
    /* Cython has no spelling for the am_send slot: set it once the type is ready. */
    static void asyncmp_set_am_send(PyTypeObject *t, sendfunc f) {
        t->tp_as_async->am_send = f;
    #ifdef Py_TPFLAGS_HAVE_AM_SEND
        t->tp_flags |= Py_TPFLAGS_HAVE_AM_SEND;
    #endif
        PyType_Modified(t);
    }
    /* Raise the exception being handled (an except block's) from a C slot function. */
    static void asyncmp_reraise_handled(void) {
        PyObject *t, *v, *tb;
        PyErr_GetExcInfo(&t, &v, &tb);
        PyErr_Restore(t, v, tb);
    }
    /* CPython 3.10-3.11's running-loop holder (Modules/_asynciomodule.c): its first field. */
    typedef struct { PyObject_HEAD PyObject *rl_loop; } asyncmp_loop_holder;
    static PyObject *asyncmp_holder_loop(PyObject *holder) {
        return ((asyncmp_loop_holder *)holder)->rl_loop;
    }
    /* Static types say their module through tp_name: make the public classes say asyncmp. */
    static void asyncmp_set_tp_name(PyTypeObject *t, const char *name) {
        t->tp_name = name;
        PyType_Modified(t);
    }
    """
    void asyncmp_set_am_send(PyTypeObject* t, sendfunc f)
    void asyncmp_reraise_handled()
    void asyncmp_set_tp_name(PyTypeObject* t, const char* name)
    PyObject* asyncmp_holder_loop(PyObject* holder)

cdef object _Future = asyncio.Future
# Unbound methods, called as functions: no method look-up per call (the objects they are
# called on are exactly of these types).
cdef object _fut_done = _Future.done
cdef object _fut_get_loop = _Future.get_loop
cdef object _fut_set_result = _Future.set_result
cdef object _fut_await = _Future.__await__
cdef object _deque_append = deque.append
cdef object _deque_popleft = deque.popleft
cdef object _BaseEventLoop = asyncio.BaseEventLoop
cdef object _CancelledError = asyncio.CancelledError
cdef object _get_running_loop = asyncio._get_running_loop
cdef object _monotonic = time.monotonic

# ReplyContext._state, as in _reply.py
cdef enum:
    QUEUED = 0
    ACTIVE = 1

# An outcome's state, as in _lowlevel/_outcome.py
cdef enum:
    PENDING_ = 0
    DONE_ = 1
    GIVEN_UP_ = 2


# -- the running loop, cached -----------------------------------------------------------------

cdef dict _sys_modules = sys.modules


cdef inline bint trio_may_run() except -1:
    """Whether trio (or another library sniffio knows) may be running this thread: never
    while trio is not even imported (a dict look-up instead of the thread-local's)."""
    if PyDict_GetItem(_sys_modules, "trio") == NULL:
        return False
    return library_mark.name is not None


cdef str _HOLDER_KEY = "__asyncio_running_event_loop__"
# The address of a running-loop holder that asyncio._get_running_loop() — with its getpid()
# — found current in this process with a loop. Never a reference: it keeps nothing alive
# (a closed loop is freed as soon as asyncio lets go of it), and it is dereferenced only when
# it equals the holder that is current now, which is alive. See `running_loop`.
cdef PyObject* _known_holder = NULL
# CPython 3.10-3.11 keep the loop in a holder object whose first field is the loop (checked
# at run time: a holder of any other shape turns the cache off); 3.12 and later have no
# holder and no getpid(): there, `_get_running_loop()` is as fast as this.
cdef bint _holder_cache = sys.version_info < (3, 12)


cdef inline object running_loop():
    """asyncio._get_running_loop(), without its getpid() system call on CPython 3.10-3.11.

    Why this is exact: asyncio makes a new holder each time a loop starts or stops on a
    thread, stamped with the pid of the process that made it, and reports "no loop" for a
    holder from another process (a forked child). A holder found at the known address is
    either the one `_get_running_loop()` approved, or a newer one made in this process since
    (the cache is cleared in a forked child before any look-up), whose pid is ours too; so
    its loop is the answer `_get_running_loop()` would give."""
    global _known_holder, _holder_cache
    cdef PyObject* tsdict
    cdef PyObject* holder
    if not _holder_cache:
        return _get_running_loop()
    tsdict = <PyObject*>PyThreadState_GetDict()
    if tsdict == NULL:
        return _get_running_loop()
    holder = PyDict_GetItem(<object>tsdict, _HOLDER_KEY)
    if holder == NULL:  # no loop ever ran on this thread (3.10-3.11 keep the holder here)
        return None
    if holder == _known_holder:
        return <object>asyncmp_holder_loop(holder)
    loop = _get_running_loop()
    if loop is not None:
        if asyncmp_holder_loop(holder) == <PyObject*>loop:
            _known_holder = holder
        else:  # not the holder this code knows: never use the cache
            _holder_cache = False
    return loop


def _forget_loop():
    global _known_holder
    _known_holder = NULL


os.register_at_fork(after_in_child=_forget_loop)


# -- the lock ---------------------------------------------------------------------------------

@cython.final
cdef class Mutex:
    """The channel's lock (``core.lock``), with the API of ``threading.Lock`` for the
    pure-Python code that shares it.

    Design note. On CPython 3.11 every ``PyThread_acquire_lock`` call reads the monotonic
    clock first, even a non-blocking one (it computes a deadline up front): about 4 % of a
    request's time at 64 clients. So the lock is a flag guarded by the GIL, and a real lock
    is used only to wait:

    - taking a free lock (``held`` false) sets ``held``; giving it back with nobody waiting
      clears it. Both run with the GIL held, which makes them atomic among threads. (This
      module is not declared free-threading compatible, so a free-threaded CPython runs
      with the GIL once it is imported.)
    - a thread that finds it held counts itself in ``waiting`` and blocks on ``_handoff``, a
      ``PyThread`` lock held while no hand-off is pending. The holder that gives the lock
      back while someone waits *hands it off*: ``held`` stays set, ``waiting`` drops by one
      and ``_handoff`` is released; whichever waiter takes ``_handoff`` owns the lock. At
      most one hand-off is pending at a time (only an owner gives, and the next owner is
      whoever takes it), and no taker can slip in between: ``held`` never clears.
    - a timed wait that runs out looks at ``_handoff`` once more with the GIL held: a
      hand-off that was made after the wait gave up, but before the GIL came back, is its
      own (it was counted among the waiters); otherwise it uncounts itself.
    """

    cdef PyThread_type_lock _handoff
    cdef bint _held
    cdef Py_ssize_t _waiting

    def __cinit__(self):
        self._handoff = PyThread_allocate_lock()
        if self._handoff == NULL:
            raise MemoryError("cannot allocate a lock")
        PyThread_acquire_lock(self._handoff, NOWAIT_LOCK)  # held: no hand-off pending

    def __dealloc__(self):
        if self._handoff != NULL:
            PyThread_acquire_lock(self._handoff, NOWAIT_LOCK)  # no hand-off can be pending:
            PyThread_release_lock(self._handoff)  # its taker would hold a reference
            PyThread_free_lock(self._handoff)

    cdef inline void take(self):
        if self._held:
            self.wait(-1)
        else:
            self._held = True

    cdef inline void give(self):
        if self._waiting:
            self._waiting -= 1
            PyThread_release_lock(self._handoff)  # the lock passes on, still held
        else:
            self._held = False

    cdef bint wait(self, long long micros):
        """Wait for a hand-off (the lock is held by another thread): True once it is ours,
        False if *micros* (>= 0) ran out first."""
        cdef PyLockStatus status
        self._waiting += 1
        with nogil:
            status = PyThread_acquire_lock_timed(self._handoff, micros, 0)
        if status == PY_LOCK_ACQUIRED:
            return True
        if _mutex_hook is not None:
            _mutex_hook()
        if PyThread_acquire_lock(self._handoff, NOWAIT_LOCK):
            return True  # handed to us after the wait ran out: we were counted
        self._waiting -= 1
        return False

    def acquire(self, blocking=True, timeout=-1):
        cdef long long micros
        if not self._held:
            self._held = True
            return True
        if not blocking:
            return False
        micros = -1 if timeout is None or timeout < 0 else <long long>(timeout * 1e6)
        return self.wait(micros)

    def release(self):
        if not self._held:
            raise RuntimeError("release unlocked lock")
        self.give()

    def locked(self):
        return self._held

    def __enter__(self):
        self.take()
        return True

    def __exit__(self, *exc_info):
        self.give()


cdef object _mutex_hook = None


def _set_mutex_hook(hook):
    """Tests only: a `Mutex` wait that ran out calls ``hook()`` before it looks for a late
    hand-off (``None``: none), widening that window."""
    global _mutex_hook
    _mutex_hook = hook


# -- a thread's parker ------------------------------------------------------------------------

cdef object _wait_hook = None
cdef unsigned long _main_ident = threading.main_thread().ident
cdef bint _main_in_wait = False


def _set_wait_hook(hook):
    """Tests only: have every parker wait call ``hook()`` first (``None``: none). If the hook
    raises, the wait raises it as if a signal handler had, while blocked: nothing consumed."""
    global _wait_hook
    _wait_hook = hook


def _main_thread_in_wait():
    """Tests only: whether the main thread is blocked in a parker's wait right now (where a
    signal handler that raises interrupts a blocking call)."""
    return _main_in_wait


@cython.final
cdef class Parker:
    """What a plain thread blocks on in ``client.blocking.send`` and ``server.blocking.wait``:
    a lock that is held while nobody has woken the thread; `wake` releases it.

    One per thread, reused call after call (`checkout` / `checkin`) instead of a new lock per
    call. That is safe because a parker is checked in only when *clean* — held, and no wake-up
    on its way: every wait ends by consuming the wake-up it was given (the acquire succeeded),
    or by deregistering before any waker took it, or — a waker took it first — by waiting
    for that wake-up (`consume`: it is a few instructions away, uninterruptibly). A parker in
    use is out of its thread's slot, so a signal handler that makes a blocking call while the
    thread is blocked gets a fresh one.

    Signals: a wait blocks with the GIL released and runs signal handlers when one arrives
    (as ``lock.acquire()`` does); a handler that raises ends the wait with its exception and
    nothing consumed. Handlers never run after the acquire succeeded: an interrupt cannot
    land between taking a wake-up and returning it.
    """

    cdef PyThread_type_lock _lock
    cdef public object value  # what the waker delivered (a server's request), read after a wait

    def __cinit__(self):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError("cannot allocate a lock")
        PyThread_acquire_lock(self._lock, NOWAIT_LOCK)

    def __dealloc__(self):
        if self._lock != NULL:
            # Held, or released by a wake-up nobody consumed: free it unlocked either way.
            PyThread_acquire_lock(self._lock, NOWAIT_LOCK)
            PyThread_release_lock(self._lock)
            PyThread_free_lock(self._lock)

    def wake(self, value=None):
        """Wake the thread with *value* (the `_wake` protocol: called once per wait)."""
        self.c_wake(value)
        return True

    cdef inline void c_wake(self, object value):
        self.value = value
        PyThread_release_lock(self._lock)

    cdef int c_wait(self, double timeout) except -1:
        """Block until woken (1: the wake-up consumed) or for *timeout* seconds (0; no limit
        if negative). A signal handler's exception propagates, nothing consumed."""
        global _main_in_wait
        cdef PyLockStatus got
        cdef long long micros = -1
        cdef double deadline = 0.0
        cdef bint main
        if _wait_hook is not None:
            _wait_hook()
        if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            return 1
        if timeout == 0.0:
            return 0
        if timeout > 0.0:
            deadline = _monotonic() + timeout
            micros = <long long>min(timeout * 1e6, <double>PY_TIMEOUT_MAX)
        main = PyThread_get_thread_ident() == _main_ident
        if main:
            _main_in_wait = True
        try:
            # A signal that came since the last Python code ran has not had its handler run
            # (there was no bytecode boundary since): run it now, as Python would have
            # before reaching the wait, or the wait would block without it.
            PyErr_CheckSignals()
            while True:
                with nogil:
                    got = PyThread_acquire_lock_timed(self._lock, micros, 1)
                if got == PY_LOCK_ACQUIRED:
                    return 1
                if got == PY_LOCK_FAILURE:
                    return 0
                PyErr_CheckSignals()  # interrupted by a signal: run its handler (may raise)
                if timeout > 0.0:
                    left = deadline - _monotonic()
                    if left <= 0.0:
                        return 1 if PyThread_acquire_lock(self._lock, NOWAIT_LOCK) else 0
                    micros = <long long>min(left * 1e6, <double>PY_TIMEOUT_MAX)
        finally:
            if main:
                _main_in_wait = False

    cdef inline void consume(self):
        """A waker took this parker: take its wake-up, which is on its way (not interruptible:
        the waker holds no lock it could be waiting for)."""
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)


cdef str _PARKER_KEY = "asyncmp.parker"


cdef inline Parker checkout():
    """This thread's parker, taken out of its slot (the thread-state dict), or a new one."""
    cdef PyObject* tsdict = <PyObject*>PyThreadState_GetDict()
    cdef PyObject* found
    if tsdict != NULL:
        found = PyDict_GetItem(<object>tsdict, _PARKER_KEY)
        if found != NULL:
            parker = <Parker>found
            PyDict_DelItem(<object>tsdict, _PARKER_KEY)
            return parker
    return Parker.__new__(Parker)


cdef inline int checkin(Parker parker) except -1:
    """Put a clean *parker* back in this thread's slot (see `Parker`)."""
    cdef PyObject* tsdict = <PyObject*>PyThreadState_GetDict()
    if tsdict != NULL:
        PyDict_SetItem(<object>tsdict, _PARKER_KEY, parker)
    return 0


def _parker_is_clean():
    """Tests only: whether this thread's parker, if it has one, is clean (held, no wake-up
    left in it). A dirty one is made clean again, so that one failure does not cascade."""
    cdef PyObject* tsdict = <PyObject*>PyThreadState_GetDict()
    cdef PyObject* found = NULL
    if tsdict != NULL:
        found = PyDict_GetItem(<object>tsdict, _PARKER_KEY)
    if found == NULL:
        return True
    return not PyThread_acquire_lock((<Parker>found)._lock, NOWAIT_LOCK)


cdef inline int ensure_blocking_allowed(str operation) except -1:
    """_wake.ensure_blocking_allowed: no blocking call on a thread that runs an event loop
    (trio, which marks its threads in sniffio's thread-local, or asyncio)."""
    if trio_may_run() or running_loop() is not None:
        raise RuntimeError(
            f"{operation} blocks the calling thread, but this thread runs an event loop; "
            "await the async form instead"
        )
    return 0


# -- answers ----------------------------------------------------------------------------------

# Answers from other threads on their way to an asyncio requester (see _reply.py).
cdef dict _in_flight = {}
LOST = object()


def _resolve(fut, value):
    if not fut.done():
        _in_flight.pop(fut, None)
        fut.set_result(value)


cdef bint settle(object to, object value) except -1:
    """Deliver *value* (a reply or a Failure) to a requester. True if it still waited."""
    if type(to) is not _Future:
        if type(to) is BlockingCall:
            return (<BlockingCall>to).c_settle(value)
        return to.settle(value)
    if _fut_done(to):  # cancelled: the requester gave up
        return False
    loop = _fut_get_loop(to)
    if loop is running_loop():
        _fut_set_result(to, value)
        return True
    _in_flight[to] = value
    try:
        loop.call_soon_threadsafe(_resolve, to, value)
    except RuntimeError:  # its loop is closed: the requester is gone
        _in_flight.pop(to, None)
        return False
    if to.done():
        return _in_flight.pop(to, LOST) is LOST
    return True


def settle_py(to, value):
    """`settle`, for the pure-Python code."""
    return settle(to, value)


cdef object reclaim(object fut, object exc):
    """The answer a requester leaving by *exc* should return instead, or LOST (_reply.py)."""
    value = _in_flight.pop(fut, LOST)
    if value is LOST or not isinstance(exc, _CancelledError):
        return LOST
    return value if anyio_cancel_pending() else LOST


cdef inline bint withdrawn(ReplyContext node) except -1:
    """Whether the requester of *node* gave up (a hint: it may give up right after)."""
    to = node._to
    if type(to) is _Future:
        return _fut_done(to)
    if type(to) is BlockingCall:
        return (<BlockingCall>to).state != PENDING_
    return to is None or to.state != PENDING


@cython.final
cdef class BlockingCall:
    """The requester of ``client.blocking.send`` on the compiled core: the outcome cell of
    `_reply._Ticket` (PENDING, then DONE with the answer or GIVEN_UP), specialised to one
    waiting thread, whose `Parker` it wakes. Its state changes under the channel's lock."""

    cdef Mutex lock
    cdef public int state
    cdef public object value
    cdef Parker parker

    def settle(self, value):
        """Store the answer and wake the thread; ``False`` if it no longer waits."""
        return self.c_settle(value)

    cdef bint c_settle(self, object value) except -1:
        self.lock.take()
        if self.state != PENDING_:
            self.lock.give()
            return False
        self.state = DONE_
        self.value = value
        self.lock.give()
        self.parker.c_wake(None)
        return True

    cdef bint leave(self) except -1:
        """The thread stops waiting: give the call up (True) or, if the answer came first,
        take the wake-up it sent (False). Either way the parker is clean afterwards."""
        # Made before the lock is taken: Python code may run a signal handler, which may
        # raise, and nothing may raise while the lock is held.
        given_up = Failure(Closed("this request was cancelled"))
        self.lock.take()
        if self.state == PENDING_:
            self.state = GIVEN_UP_
            self.value = given_up
            self.lock.give()
            return True
        self.lock.give()
        self.parker.consume()
        return False


# -- a request --------------------------------------------------------------------------------

# No freelist for the classes with a __del__: CPython marks an object finalized once, and a
# freelist would hand that mark to the next object made in its memory (no __del__ for it).
@cython.final
cdef class ReplyContext:
    """The server's handle for answering one request (see asyncmp.ReplyContext)."""

    cdef public ChannelCoreBase _core
    cdef public object _msg
    cdef public int _state
    cdef public object _to
    cdef public unsigned long _tid

    __final__ = True

    def __init__(self, *args, **kwargs):
        raise TypeError("ReplyContext objects are made by Server.wait(), not directly")

    @classmethod
    def __class_getitem__(cls, item):
        return _GenericAlias(cls, item)

    def reply(self, value):
        to = self._to
        if to is None:
            raise AlreadyReplied("cannot reply(): this reply context was already answered")
        self._to = None
        self._core.answered += 1
        # settle(), with its hot case first: an asyncio requester whose loop runs here.
        if type(to) is _Future:
            if self._tid == PyThread_get_thread_ident() and _fut_get_loop(to) is running_loop():
                if _fut_done(to):
                    return False
                _fut_set_result(to, value)
                return True
        return settle(to, value)

    def fail(self, exc):
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() takes an exception instance, not {exc!r}")
        to = self._to
        if to is None:
            raise AlreadyReplied("cannot fail(): this reply context was already answered")
        self._to = None
        self._core.answered += 1
        return settle(to, Failure(exc))

    def close(self):
        self._close(None)

    def _close(self, cause):
        to = self._to
        if to is not None and self._state == ACTIVE:
            self._to = None
            self._core.answered += 1
            error = NoReply("the server closed the reply context without answering")
            error.__cause__ = cause
            settle(to, Failure(error))

    @property
    def answered(self):
        return self._to is None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._close(exc)

    def __del__(self):
        to = self._to
        if to is not None and not sys.is_finalizing():
            if type(to) is _Future:
                self._close(None)  # answering a future takes no lock
            else:
                finalize((self._core.lock,), self._close, None)

    def __repr__(self):
        return f"<ReplyContext {'answered' if self._to is None else 'pending'}>"


cdef object _GenericAlias = type(list[int])


cdef inline ReplyContext make_request(
    ChannelCoreBase core, object msg, object to, unsigned long tid
):
    cdef ReplyContext node = ReplyContext.__new__(ReplyContext)
    node._core = core
    node._msg = msg
    node._state = QUEUED
    node._to = to
    node._tid = tid
    return node


def new_request(core, msg, to):
    """A fresh, QUEUED request (see _reply.new_request)."""
    return make_request(core, msg, to, 0)


# -- the channel's shared state ---------------------------------------------------------------

cdef object _pure_receive = None
cdef object _push_hook = None


def _set_push_hook(hook):
    """Tests only: have every push call ``hook(core)`` first (``None``: none), to widen a
    race window the way the pure-Python tests do by wrapping ``ChannelCore.push``."""
    global _push_hook
    _push_hook = hook


cdef class ChannelCoreBase:
    """The hot part of a channel's shared state (see _channel_core._PureChannelCore)."""

    cdef public Mutex lock
    cdef public object queue
    cdef public object max_queued
    cdef public Py_ssize_t clients
    cdef public object weak_made
    cdef public object weak_dropped
    cdef public Py_ssize_t taken
    cdef public Py_ssize_t answered
    cdef public bint server_closed
    cdef public bint stopped
    cdef public object server_waiters
    cdef object _requeue  # the bound method, made once: `deliver` takes it per hand-off

    def __init__(self, max_queued):
        import itertools

        self.lock = Mutex()
        self.queue = deque()
        self.max_queued = max_queued
        self.clients = 1
        self.weak_made = itertools.count()
        self.weak_dropped = itertools.count()
        self.taken = 0
        self.answered = 0
        self.server_closed = False
        self.stopped = False
        self.server_waiters = WaitQueue(self.lock)
        self._requeue = self.requeue

    # -- client side ----------------------------------------------------------------------

    def push(self, ReplyContext node, bint nowait, loop=None):
        self.c_push(node, nowait, loop)

    cdef int c_push(self, ReplyContext node, bint nowait, object loop) except -1:
        cdef object waiter
        if _push_hook is not None:
            _push_hook(self)
        self.lock.take()
        try:
            if self.stopped:
                raise ServerDisappeared(
                    "the server is closed"
                    if self.server_closed
                    else "the server has stopped: every client had closed"
                )
            if PyDict_Size(self.server_waiters) == 0:
                if (
                    nowait
                    and self.max_queued is not None
                    and len(self.queue) >= self.max_queued
                ):
                    self._purge()
                    if len(self.queue) >= self.max_queued:
                        raise WouldBlock(
                            f"the channel is full ({self.max_queued} requests queued)"
                        )
                _deque_append(self.queue, node)
                return 0
            waiter = pop_oldest(self.server_waiters)
            node._state = ACTIVE
            self.taken += 1
        finally:
            self.lock.give()
        if type(waiter) is _Future and _fut_get_loop(waiter) is (loop or running_loop()):
            if not _fut_done(waiter):
                _fut_set_result(waiter, node)
            else:
                self.c_requeue(node)
        else:
            self.hand_over(waiter, node)
        return 0

    cdef int hand_over(self, object waiter, ReplyContext node) except -1:
        """`deliver(waiter, node, requeue)` (taken out of server_waiters): the thread and
        other-loop cases in C, trio in Python."""
        if type(waiter) is Parker:
            (<Parker>waiter).c_wake(node)
        elif type(waiter) is _Future:
            loop = _fut_get_loop(waiter)
            if loop is running_loop():
                _hand_off(waiter, node, self)
            else:
                try:
                    loop.call_soon_threadsafe(_hand_off, waiter, node, self)
                except RuntimeError:  # its loop is closed: the task that waited is gone
                    self.c_requeue(node)
        else:
            deliver(waiter, node, self._requeue)
        return 0

    def _purge(self):
        """Drop the tombstones from the queue. Call with the lock held."""
        cdef ReplyContext node
        live = [node for node in self.queue if not withdrawn(node)]
        self.queue = deque(live)

    # -- server side ----------------------------------------------------------------------

    def take(self, ended):
        return self.c_take(ended)

    cdef object c_take(self, object ended):
        """The oldest live request as (msg, rctx), None for now, or raise (lock held)."""
        cdef ReplyContext node
        queue = self.queue
        while queue:
            node = _deque_popleft(queue)
            if not withdrawn(node):
                node._state = ACTIVE
                self.taken += 1
                return (node._msg, node)
        if self.server_closed:
            raise Closed("the server is closed")
        if not self.clients:
            self.stopped = True
            raise ended("every client has gone and the queue is drained")
        return None

    def handed(self, ReplyContext node):
        return self.c_handed(node)

    cdef object c_handed(self, ReplyContext node):
        if self.server_closed or withdrawn(node):
            self.c_requeue(node)
            if self.server_closed:
                raise Closed("the server is closed")
            return None
        return (node._msg, node)

    def requeue(self, ReplyContext node):
        self.c_requeue(node)

    cdef int c_requeue(self, ReplyContext node) except -1:
        cdef object to = None
        cdef object next_server = None
        self.lock.take()
        try:
            if withdrawn(node):
                node._to = None
                self.taken -= 1
                return 0
            if self.server_closed:
                to = node._to
                node._to = None
                self.taken -= 1
            elif PyDict_Size(self.server_waiters):
                next_server = pop_oldest(self.server_waiters)
            else:
                node._state = QUEUED
                self.taken -= 1
                self.queue.appendleft(node)
                return 0
        finally:
            self.lock.give()
        if next_server is not None:
            self.hand_over(next_server, node)
        elif to is not None:
            settle(to, Failure(ServerDisappeared("the server closed before taking it")))
        return 0

    def unpark(self, waiter):
        return self.server_waiters.leave(waiter)

    def receive(self, ended, loop=None):
        return self.c_receive(ended, loop)

    cdef object c_receive(self, object ended, object loop):
        """`Server.wait`: an awaitable of the next request (compiled on asyncio)."""
        global _pure_receive
        cdef _WaitOp op
        if loop is None:
            if not trio_may_run():
                loop = running_loop()
            if loop is None:  # trio (or no loop at all): the pure-Python coroutine
                if _pure_receive is None:
                    from asyncmp._channel_core import _PureChannelCore

                    _pure_receive = _PureChannelCore.receive
                return _pure_receive(self, ended)
        op = _WaitOp.__new__(_WaitOp)
        op.core = self
        op.ended = ended
        op.loop = loop
        return op

    def in_flight(self):
        return self.taken - self.answered

    cdef bint leave_parked(self, Parker parker) except -1:
        """Deregister *parker* from server_waiters: False if a waker took it already."""
        cdef bint found
        self.lock.take()
        found = PyDict_GetItem(self.server_waiters, parker) != NULL
        if found:
            PyDict_DelItem(self.server_waiters, parker)
        self.lock.give()
        return found

    cdef object c_receive_blocking(self, object ended, object timeout):
        """`server.blocking.wait` (see ChannelCore.receive_blocking), on this thread's
        parker. Leaving — a timeout, an interrupt — deregisters the parker, or takes the
        request a waker handed it and passes it on (`requeue`): none is lost."""
        cdef Parker parker = checkout()
        cdef bint parked = False
        cdef double left = -1.0
        cdef double deadline = 0.0
        cdef bint woken
        if timeout is not None:
            left = timeout
            deadline = _monotonic() + left
        try:
            while True:
                self.lock.take()
                try:
                    item = self.c_take(ended)
                    if item is None:
                        parker.value = None
                        self.server_waiters[parker] = parker
                        parked = True
                finally:
                    self.lock.give()
                if item is not None:
                    return item
                if timeout is not None:
                    left = max(0.0, deadline - _monotonic())
                try:
                    woken = parker.c_wait(left)
                except BaseException:
                    # Interrupted (Ctrl-C): leave as a timeout does; a request handed over
                    # meanwhile goes on to the next wait.
                    if not self.leave_parked(parker):
                        parker.consume()
                        node = parker.value
                        parker.value = None
                        if node is not None:
                            self.c_requeue(node)
                    parked = False
                    raise
                if not woken:
                    if self.leave_parked(parker):
                        parked = False
                        raise TimeoutError(f"no request within {timeout} seconds")
                    parker.consume()  # a waker took it just now: its delivery is on its way
                parked = False
                node = parker.value
                parker.value = None
                if node is not None:
                    item = self.c_handed(node)
                    if item is not None:
                        return item
        finally:
            if not parked:
                checkin(parker)


def _hand_off(fut, ReplyContext node, ChannelCoreBase core):
    """Give *node* to a parked server's future, or back to the channel if it was cancelled
    (run on the future's loop)."""
    if not _fut_done(fut):
        _fut_set_result(fut, node)
    else:
        core.c_requeue(node)


cdef inline object pop_oldest(object parked):
    """WaitQueue.pop_oldest, in C (the queue is a dict: oldest first). Lock held."""
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    PyDict_Next(parked, &pos, &key, &value)
    waiter = <object>value
    del parked[<object>key]
    return waiter


# -- the awaitables ---------------------------------------------------------------------------

cdef object _send_other = None


@cython.final
cdef class _SendOp:
    """``client.send(msg)`` on the compiled core: the request's round trip, awaitable.

    States: 0 not started; 1 waiting for the reply (``fut``); 2 finished; 3 delegating to the
    pure-Python coroutine (not on asyncio: trio, or no loop)."""

    cdef ClientBase client
    cdef object msg
    cdef object fut
    cdef object it  # the future's own iterator, while waiting: it yields the future
    cdef object delegate
    cdef int state

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, arg):
        cdef PyObject* out = NULL
        cdef int r = self.step(arg, &out)
        value = <object>out
        Py_DECREF(value)
        if r == 0:
            raise StopIteration(value)
        return value

    def throw(self, typ, val=None, tb=None):
        exc = _exception(typ, val, tb)
        if self.state == 3:
            return self.delegate.throw(exc)
        if self.state == 1:
            self.state = 2
            fut = self.fut
            self.fut = None
            self.it = None
            try:
                fut.cancel()
            except RuntimeError:  # its loop is closed: the future is cancelled all the same
                pass
            value = reclaim(fut, exc)
            if value is not LOST:
                if type(value) is Failure:
                    raise (<object>value).error
                raise StopIteration(value)
        self.state = 2
        raise exc

    def close(self):
        if self.state == 3:
            self.delegate.close()
        elif self.state == 1:
            fut = self.fut
            self.fut = None
            self.it = None
            try:
                fut.cancel()
            except RuntimeError:
                pass
        self.state = 2

    def __del__(self):
        if self.state == 0:
            warnings.warn(
                "coroutine 'Client.send' was never awaited", RuntimeWarning, stacklevel=1
            )
        elif self.state in (1, 3):
            self.close()

    cdef int step(self, object arg, PyObject** out) except -1:
        """Advance: 1 with the future to wait for in *out*, 0 with the result in *out*."""
        global _send_other
        cdef ChannelCoreBase core
        cdef ReplyContext node
        cdef PySendResult sent
        if self.state == 1:
            return self.await_reply(arg, out)
        if self.state == 3:
            sent = PyIter_Send(<PyObject*>self.delegate, <PyObject*>arg, out)
            if sent == PYGEN_ERROR:
                self.state = 2
                return -1
            if sent == PYGEN_RETURN:
                self.state = 2
                return 0
            return 1
        if self.state != 0:
            raise RuntimeError("cannot reuse already awaited coroutine")
        client = self.client
        if client._closed:
            self.state = 2
            raise Closed("this client is closed")
        core = client._core
        loop = None if trio_may_run() else running_loop()
        if loop is None:  # trio, or no loop: the pure-Python path
            if _send_other is None:
                from asyncmp._channel import _send_other as fn

                _send_other = fn
            self.delegate = _send_other(client, self.msg)
            self.state = 3
            return self.step(arg, out)
        fut = _Future(loop=loop)
        node = make_request(core, self.msg, fut, PyThread_get_thread_ident())
        self.msg = None
        self.state = 2  # if push raises
        core.c_push(node, False, loop)
        # Hold no reference to the request while waiting: the server's ReplyContext must be
        # collectable (-> NoReply) the moment the server drops it.
        node = None
        self.fut = fut
        self.it = _fut_await(fut)
        self.state = 1
        return self.await_reply(None, out)

    cdef int await_reply(self, object arg, PyObject** out) except -1:
        """Wait on the future through its own iterator (which yields it to the task, and
        returns its result without a StopIteration)."""
        cdef PySendResult sent = PyIter_Send(<PyObject*>self.it, <PyObject*>arg, out)
        if sent == PYGEN_NEXT:
            return 1
        self.state = 2
        self.it = None
        self.fut = None
        if sent == PYGEN_ERROR:
            return -1
        value = <object>out[0]  # a new reference: hand it on, or drop it for the error
        if type(value) is Failure:
            Py_DECREF(value)
            out[0] = NULL
            raise value.error
        return 0


cdef object _exception(object typ, object val, object tb):
    """The exception a generator's throw(typ, val, tb) raises."""
    if isinstance(typ, BaseException):
        exc = typ
    elif val is None:
        exc = typ()
    elif isinstance(val, BaseException):
        exc = val
    else:
        exc = typ(val)
    if tb is not None:
        exc = exc.with_traceback(tb)
    return exc


cdef PySendResult sendop_am_send(PyObject* op, PyObject* arg, PyObject** out) noexcept:
    cdef int r
    try:
        r = (<_SendOp>op).step(<object>arg, out)
    except BaseException:
        asyncmp_reraise_handled()
        return PYGEN_ERROR
    return PYGEN_NEXT if r == 1 else PYGEN_RETURN


cdef class ClientBase:
    """The fields of an asyncmp.Client, read by `client_send` without a look-up."""

    cdef public ChannelCoreBase _core
    cdef public bint _closed


cdef class ServerBase:
    """The field of an asyncmp.Server."""

    cdef public ChannelCoreBase _core


def blocking_send(self, msg, timeout=None):
    """Send *msg* and block until the reply arrives (see asyncmp.Client.blocking)."""
    cdef ClientBase client
    cdef ChannelCoreBase core
    cdef Parker parker
    cdef BlockingCall call
    cdef double wait_for = -1.0
    if timeout is not None:
        timeout = check_timeout(timeout)
        wait_for = timeout
    ensure_blocking_allowed("client.blocking.send()")
    client = self._client
    if client._closed:
        raise Closed("this client is closed")
    core = client._core
    parker = checkout()
    call = BlockingCall.__new__(BlockingCall)
    call.lock = core.lock
    call.parker = parker
    try:
        core.c_push(make_request(core, msg, call, 0), False, None)
    except BaseException:
        call.leave()  # whatever happened, nobody waits for it
        checkin(parker)
        raise
    # Interrupted in the wait (Ctrl-C): the request is given up exactly as on a timeout, or
    # it would stay queued and be served.
    try:
        woken = parker.c_wait(wait_for)
    except BaseException:
        call.leave()
        checkin(parker)
        raise
    if not woken and call.leave():
        checkin(parker)
        raise TimeoutError(f"no reply within {timeout} seconds")
    checkin(parker)
    value = call.value
    if type(value) is Failure:
        raise (<object>value).error
    return value


def blocking_wait(self, timeout=None):
    """Block until the next request arrives (see asyncmp.Server.blocking)."""
    cdef ChannelCoreBase core
    if timeout is not None:
        timeout = check_timeout(timeout)
    ensure_blocking_allowed("server.blocking.wait()")
    core = (<ServerBase>self._server)._core
    return core.c_receive_blocking(ClientsDisappeared, timeout)


def client_send(ClientBase self, msg):
    """Send *msg* and wait for the reply (see asyncmp.Client.send)."""
    cdef _SendOp op = _SendOp.__new__(_SendOp)
    op.client = self
    op.msg = msg
    return op


@cython.final
@cython.freelist(8)
cdef class _WaitOp:
    """``server.wait()`` on the compiled core, on an asyncio loop: the next request."""

    cdef ChannelCoreBase core
    cdef object ended
    cdef object loop
    cdef object waiter  # the parked future, while parked
    cdef object it  # its iterator
    cdef int done

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    def send(self, arg):
        cdef PyObject* out = NULL
        cdef int r = self.step(arg, &out)
        value = <object>out
        Py_DECREF(value)
        if r == 0:
            raise StopIteration(value)
        return value

    def throw(self, typ, val=None, tb=None):
        exc = _exception(typ, val, tb)
        self.leave()
        raise exc

    def close(self):
        self.leave()

    cdef void leave(self) except *:
        """Cancelled while parked. Still parked: leave. Handed a node: give it back. A
        hand-off still in flight from another thread gives it back itself (`deliver`)."""
        waiter = self.waiter
        self.waiter = None
        self.it = None
        self.done = 1
        if waiter is None:
            return
        if not self.core.unpark(waiter) and _fut_done(waiter) and not waiter.cancelled():
            node = waiter.result()
            if node is not None:
                self.core.c_requeue(node)

    cdef int step(self, object arg, PyObject** out) except -1:
        cdef ChannelCoreBase core = self.core
        cdef ReplyContext node
        cdef PySendResult sent
        if self.done:
            raise RuntimeError("cannot reuse already awaited coroutine")
        if self.waiter is not None:
            sent = PyIter_Send(<PyObject*>self.it, <PyObject*>arg, out)
            if sent == PYGEN_NEXT:
                return 1
            self.waiter = None
            self.it = None
            if sent == PYGEN_ERROR:
                self.done = 1
                return -1
            got = <object>out[0]
            Py_DECREF(got)  # `got` holds it now
            out[0] = NULL
            if got is not None:
                node = got
                # The hot path: handed a live request by an asyncio client.
                if not core.server_closed:
                    to = node._to
                    if type(to) is _Future and not _fut_done(to):
                        return self.result((node._msg, node), out)
                item = core.c_handed(node)
                if item is not None:
                    return self.result(item, out)
            return self.look(core, False, out)
        return self.look(core, True, out)

    cdef int look(self, ChannelCoreBase core, bint first, PyObject** out) except -1:
        """Take a request, or park (lock taken here)."""
        cdef ReplyContext node
        item = None
        waiter = None
        core.lock.take()
        try:
            queue = core.queue
            if first and queue:
                # A request is queued (the hot path under load): `take`, inlined.
                node = queue[0]
                to = node._to
                if type(to) is _Future and not _fut_done(to):
                    _deque_popleft(queue)
                    node._state = ACTIVE
                    core.taken += 1
                    item = (node._msg, node)
            if item is None:
                busy = queue or core.server_closed or not core.clients
                item = core.c_take(self.ended) if busy else None
                if item is None:
                    waiter = _Future(loop=self.loop)
                    core.server_waiters[waiter] = waiter
        finally:
            core.lock.give()
        if item is not None:
            return self.result(item, out)
        self.waiter = waiter
        self.it = _fut_await(waiter)
        return self.step(None, out)

    cdef inline int result(self, object item, PyObject** out) except -1:
        self.done = 1
        Py_INCREF(item)
        out[0] = <PyObject*>item
        return 0


cdef PySendResult waitop_am_send(PyObject* op, PyObject* arg, PyObject** out) noexcept:
    cdef int r
    try:
        r = (<_WaitOp>op).step(<object>arg, out)
    except BaseException:
        (<_WaitOp>op).done = 1
        asyncmp_reraise_handled()
        return PYGEN_ERROR
    return PYGEN_NEXT if r == 1 else PYGEN_RETURN


def server_wait(ServerBase self):
    """Wait for the next request (see asyncmp.Server.wait)."""
    return self._core.c_receive(ClientsDisappeared, None)


def server_anext(ServerBase self):
    return self._core.c_receive(StopAsyncIteration, None)


asyncmp_set_am_send(<PyTypeObject*>_SendOp, sendop_am_send)
asyncmp_set_am_send(<PyTypeObject*>_WaitOp, waitop_am_send)
asyncmp_set_tp_name(<PyTypeObject*>ReplyContext, "asyncmp.ReplyContext")
collections.abc.Coroutine.register(_SendOp)
collections.abc.Coroutine.register(_WaitOp)
