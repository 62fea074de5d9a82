# cython: language_level=3, binding=True, embedsignature=False
"""The primitives of asyncmp's compiled core, hand-written in Cython.

Design note. The channel's protocol is written once, in Python (`asyncmp._channel_py`); the
compiled core is that very file compiled by Cython (``asyncmp._channel_c``). What it takes
from here is only what has no pure-Python equivalent of the same cost — the same interface
as `asyncmp._lowlevel._primitives`, declared for Cython in ``_speedups.pxd`` and for type
checkers in ``_speedups.pyi``:

- `running_loop`: the running asyncio loop, looked up through the address of the running-loop
  holder that asyncio keeps in the thread state (on CPython 3.10-3.11 ``_get_running_loop()``
  makes a ``getpid()`` system call each time; `running_loop` says why the answer is the
  same); it holds no reference, so no loop outlives its use, and a fork clears it;
- `Mutex`: the channel's lock, a flag guarded by the GIL, with a ``PyThread`` lock only to
  wait on when it is contended, and the API of a ``threading.Lock`` for Python callers;
- `Parker`: what a plain thread blocks on in a blocking call, one per thread, reused;
- `StepOp`: the awaitable shell in which the compiled core runs the steps of an async
  operation (a send, a wait): it is its own iterator and answers through the ``am_send`` slot,
  so an operation costs one object (from a free list) instead of a coroutine, its closure and
  the wrapper that awaiting a Cython coroutine from Python makes.

Nothing here knows the channel. Test-only helpers (`_parker_is_clean`, `_main_thread_in_wait`,
`_set_mutex_hook`) read or set a C variable; the only one on a path that runs is the mutex
hook, tested where a timed lock wait has run out (never on a request's path).
"""

import asyncio
import collections.abc
import os
import sys
import threading
import time
import warnings

cimport cython
from cpython.dict cimport PyDict_DelItem, PyDict_GetItemWithError, PyDict_SetItem
from cpython.object cimport PyObject, PyTypeObject, destructor
from cpython.exc cimport PyErr_Clear, PyErr_Fetch, PyErr_NormalizeException, PyErr_Restore
from cpython.ref cimport Py_DECREF, Py_INCREF
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
)

from asyncmp._lowlevel._backend import library_mark

cdef extern from "pythread.h":
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock, long long, int) nogil
    unsigned long PyThread_get_thread_ident()
    const long long PY_TIMEOUT_MAX
    const PyLockStatus PY_LOCK_FAILURE

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1
    void Py_SET_REFCNT(PyObject*, Py_ssize_t)
    Py_ssize_t _refcount "Py_REFCNT" (PyObject*)
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    ctypedef PySendResult (*sendfunc)(PyObject*, PyObject*, PyObject**)
    PySendResult PyIter_Send(PyObject*, PyObject*, PyObject**)
    int PyException_SetTraceback(PyObject*, PyObject*)

cdef extern from *:
    """
    /* CPython 3.10-3.11's running-loop holder (Modules/_asynciomodule.c): its first field. */
    typedef struct { PyObject_HEAD PyObject *rl_loop; } asyncmp_loop_holder;
    static PyObject *asyncmp_holder_loop(PyObject *holder) {
        return ((asyncmp_loop_holder *)holder)->rl_loop;
    }
    """
    PyObject* asyncmp_holder_loop(PyObject* holder)

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
    """
    void asyncmp_set_am_send(PyTypeObject* t, sendfunc f)
    void asyncmp_reraise_handled()

cdef object _get_running_loop = asyncio._get_running_loop
cdef object _monotonic = time.monotonic
cdef object _Future = asyncio.Future
cdef object _fut_await = _Future.__await__


# -- the methods of a future and a deque, called without their descriptor -------------------

cdef extern from *:
    """
    /* A method of a C type, called through its C function when the object is exactly of
       that type (a subclass may override it) and the function takes the plain METH_NOARGS
       or METH_O convention; otherwise through the method descriptor, as Python calls it.
       The descriptor's own call costs as much again as the function (argument checks, the
       recursion guard): this is most of a request's cost above the work itself. */
    typedef struct {
        PyTypeObject *type;
        PyCFunction direct;  /* NULL: call through the descriptor */
        PyObject *descr;
    } asyncmp_method;

    static int asyncmp_method_init(asyncmp_method *m, PyObject *type, const char *name,
                                   int flags) {
        PyObject *descr = PyObject_GetAttrString(type, name);
        if (descr == NULL) return -1;
        m->type = (PyTypeObject *)type;
        m->descr = descr;  /* kept for the life of the process */
        m->direct = NULL;
        if (Py_IS_TYPE(descr, &PyMethodDescr_Type)) {
            PyMethodDef *def = ((PyMethodDescrObject *)descr)->d_method;
            if (def->ml_flags == flags) m->direct = def->ml_meth;
        }
        return 0;
    }
    static PyObject *asyncmp_call0(asyncmp_method *m, PyObject *self) {
        if (m->direct != NULL && Py_IS_TYPE(self, m->type)) return m->direct(self, NULL);
        return PyObject_CallOneArg(m->descr, self);
    }
    static PyObject *asyncmp_call1(asyncmp_method *m, PyObject *self, PyObject *arg) {
        PyObject *args[2];
        if (m->direct != NULL && Py_IS_TYPE(self, m->type)) return m->direct(self, arg);
        args[0] = self;
        args[1] = arg;
        return PyObject_Vectorcall(m->descr, args, 2, NULL);
    }
    /* `fut.__await__()` through its slot (a C future's iterator, made directly). */
    static PyObject *asyncmp_await(PyObject *fut, PyObject *fallback) {
        PyAsyncMethods *am = Py_TYPE(fut)->tp_as_async;
        if (am != NULL && am->am_await != NULL) return am->am_await(fut);
        return PyObject_CallOneArg(fallback, fut);
    }
    """
    ctypedef struct asyncmp_method:
        void* direct
    int asyncmp_method_init(asyncmp_method* m, object type, const char* name, int flags) except -1
    object asyncmp_call0(asyncmp_method* m, object self)
    object asyncmp_call1(asyncmp_method* m, object self, object arg)
    object asyncmp_await(object fut, object fallback)
    int METH_NOARGS
    int METH_O

cdef asyncmp_method _m_done
cdef asyncmp_method _m_get_loop
cdef asyncmp_method _m_set_result
cdef asyncmp_method _m_append
cdef asyncmp_method _m_popleft
asyncmp_method_init(&_m_done, _Future, "done", METH_NOARGS)
asyncmp_method_init(&_m_get_loop, _Future, "get_loop", METH_NOARGS)
asyncmp_method_init(&_m_set_result, _Future, "set_result", METH_O)
asyncmp_method_init(&_m_append, collections.deque, "append", METH_O)
asyncmp_method_init(&_m_popleft, collections.deque, "popleft", METH_NOARGS)


def _direct_calls():
    """Tests only: which of the methods above are called through their C function."""
    return {
        "Future.done": _m_done.direct != NULL,
        "Future.get_loop": _m_get_loop.direct != NULL,
        "Future.set_result": _m_set_result.direct != NULL,
        "deque.append": _m_append.direct != NULL,
        "deque.popleft": _m_popleft.direct != NULL,
    }


cdef object fut_done(object fut):
    return asyncmp_call0(&_m_done, fut)


cdef object fut_get_loop(object fut):
    return asyncmp_call0(&_m_get_loop, fut)


cdef object fut_set_result(object fut, object value):
    return asyncmp_call1(&_m_set_result, fut, value)


cdef object deque_append(object queue, object item):
    return asyncmp_call1(&_m_append, queue, item)


cdef object deque_popleft(object queue):
    return asyncmp_call0(&_m_popleft, queue)


# -- which loop runs this thread ------------------------------------------------------------

cdef dict _sys_modules = sys.modules


cdef inline PyObject* _get_item(dict d, str key) except? NULL:
    """``d.get(key)``, borrowed, NULL if absent: PyDict_GetItemWithError, not PyDict_GetItem,
    which saves and restores the error indicator around every look-up (a third of its cost
    on a hit, on CPython 3.11). With str keys nothing can raise."""
    return PyDict_GetItemWithError(d, key)


cdef bint trio_may_run() except -1:
    """Whether trio (or another library sniffio knows) may be running this thread: never
    while trio is not even imported (a dict look-up instead of the thread-local's)."""
    if _get_item(_sys_modules, "trio") == NULL:
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
# holder and no getpid(): there, `_get_running_loop()` is as fast as this. The environment
# variable ASYNCMP_PLAIN_LOOP_LOOKUP (any non-empty value), read at import, takes the 3.12
# path on 3.10-3.11 too, so that the test suite runs it here.
cdef bint _holder_cache = sys.version_info < (3, 12) and not os.environ.get(
    "ASYNCMP_PLAIN_LOOP_LOOKUP"
)


cdef object running_loop():
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
    holder = _get_item(<dict>tsdict, _HOLDER_KEY)
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


cdef bint is_running_here(object loop) except -1:
    """Whether *loop* is the asyncio loop running this thread now."""
    return loop is running_loop()


cdef int check_signals() except -1:
    """Run the handlers of signals that arrived (on the main thread; elsewhere a flag test):
    compiled code gives Python no chance to, until it returns."""
    return PyErr_CheckSignals()


cdef unsigned long thread_ident() noexcept:
    return PyThread_get_thread_ident()


def _forget_loop():
    global _known_holder
    _known_holder = NULL


os.register_at_fork(after_in_child=_forget_loop)


def _uses_holder_cache():
    """Tests only: whether `running_loop` takes the holder path (False: the 3.12 path)."""
    return _holder_cache


# -- a count -------------------------------------------------------------------------------

@cython.final
cdef class Counter:
    """A count that any thread may increment without a lock: a C integer changed with the GIL
    held."""

    cpdef add(self):
        """Count one."""
        self._n += 1

    cpdef Py_ssize_t value(self) except -1:
        """How many were counted."""
        return self._n


# -- the lock ---------------------------------------------------------------------------------

@cython.final
cdef class Mutex:
    """The channel's lock, with the API of ``threading.Lock`` for Python callers.

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

    Waiting is not interruptible (no signal handler runs in it): a blocking ``acquire()``
    returns with the lock taken, so the compiled code that calls it and then enters its
    ``try`` runs no Python code in between, and an interrupt cannot leave the lock held.
    """

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

    cdef bint wait(self, long long micros) except -1:
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

    cpdef bint acquire(self, bint blocking=True, double timeout=-1) except -1:
        """Take the lock (``threading.Lock.acquire``): True once taken, False if it was not
        free (*blocking* false) or *timeout* seconds ran out (negative: no limit)."""
        if not self._held:
            self._held = True
            return True
        if not blocking:
            return False
        return self.wait(-1 if timeout < 0 else <long long>(timeout * 1e6))

    cpdef release(self):
        """Give the lock back (to a waiting thread, if one waits)."""
        if not self._held:
            raise RuntimeError("release unlocked lock")
        if self._waiting:
            self._waiting -= 1
            PyThread_release_lock(self._handoff)  # the lock passes on, still held
        else:
            self._held = False

    def locked(self):
        """Whether the lock is taken."""
        return self._held

    def __enter__(self):
        self.acquire()
        return True

    def __exit__(self, *exc_info):
        self.release()


cdef object _mutex_hook = None


def _set_mutex_hook(hook):
    """Tests only: a `Mutex` wait that ran out calls ``hook()`` before it looks for a late
    hand-off (``None``: none), widening that window."""
    global _mutex_hook
    _mutex_hook = hook


# -- a thread's parker ------------------------------------------------------------------------

cdef unsigned long _main_ident = threading.main_thread().ident
# How long the main thread blocks before it looks for a signal that came just before it
# blocked (see Parker.wait), in microseconds: the most a Ctrl-C can wait in that case.
cdef unsigned long long SLICE = 20000
cdef bint _main_in_wait = False


def _main_thread_in_wait():
    """Tests only: whether the main thread is blocked in a parker's wait right now (where a
    signal handler that raises interrupts a blocking call)."""
    return _main_in_wait


@cython.final
cdef class Parker:
    """What a plain thread blocks on in a blocking call: a lock that is held while nobody has
    woken the thread; `wake` releases it. (`asyncmp._lowlevel._primitives.Parker` is the
    pure-Python one, with the same protocol.)

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

    cpdef bint wake(self, object value=None) except -1:
        """Wake the thread with *value* (called once per wait, by the waker that took it)."""
        self.value = value
        PyThread_release_lock(self._lock)
        return True

    cpdef bint wait(self, double timeout) except -1:
        """Block until woken (True: the wake-up consumed) or for *timeout* seconds (False; no
        limit if negative). A signal handler's exception propagates, nothing consumed."""
        global _main_in_wait
        cdef PyLockStatus got
        cdef long long micros = -1
        cdef double deadline = 0.0
        cdef bint main
        if PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            return True
        if timeout == 0.0:
            return False
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
                # The main thread (where signal handlers run) waits in slices: a signal that
                # arrives between the check above and the moment the thread blocks does not
                # interrupt the block, and would otherwise wait until the wait ends.
                with nogil:
                    got = PyThread_acquire_lock_timed(
                        self._lock, min(<unsigned long long>micros, SLICE) if main else micros, 1
                    )
                if got == PY_LOCK_ACQUIRED:
                    return True
                PyErr_CheckSignals()  # a signal, or a slice's end: run handlers (may raise)
                if timeout > 0.0:
                    left = deadline - _monotonic()
                    if left <= 0.0:
                        return PyThread_acquire_lock(self._lock, NOWAIT_LOCK) == 1
                    micros = <long long>min(left * 1e6, <double>PY_TIMEOUT_MAX)
                elif got == PY_LOCK_FAILURE and not main:
                    return False
        finally:
            if main:
                _main_in_wait = False

    cpdef consume(self):
        """A waker took this parker: take its wake-up, which is on its way (not interruptible:
        the waker holds no lock it could be waiting for)."""
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)


cdef str _PARKER_KEY = "asyncmp.parker"


cdef Parker checkout():
    """This thread's parker, taken out of its slot (the thread-state dict), or a new one."""
    cdef PyObject* tsdict = <PyObject*>PyThreadState_GetDict()
    cdef PyObject* found
    if tsdict != NULL:
        found = _get_item(<dict>tsdict, _PARKER_KEY)
        if found != NULL:
            parker = <Parker>found
            PyDict_DelItem(<object>tsdict, _PARKER_KEY)
            return parker
    return Parker.__new__(Parker)


cdef int checkin(Parker parker) except -1:
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
        found = _get_item(<dict>tsdict, _PARKER_KEY)
    if found == NULL:
        return True
    return not PyThread_acquire_lock((<Parker>found)._lock, NOWAIT_LOCK)


# -- the awaitable shell ----------------------------------------------------------------------

@cython.final
cdef class Delegate:
    """What a first step returns to hand the whole operation to another awaitable (the
    library's own coroutine for trio): the operation's result is that awaitable's."""

    def __cinit__(self, awaitable):
        self.awaitable = awaitable


LOST = object()


@cython.final
@cython.freelist(64)  # one per concurrent operation: 64 clients reuse theirs
@cython.no_gc_clear  # its dealloc gives up through the fields (a collected cycle included)
cdef class StepOp:
    """An async operation of the compiled core: the steps of a protocol, run as an awaitable.

    ``start(owner, arg)`` runs first. A step returns an asyncio ``Future`` to wait for —
    the op waits on it and calls ``resume(owner, its result)`` —, a `Delegate` (only
    ``start``) whose awaitable gives the result, or the result itself. ``resume`` returns the
    result, or (when *loops*) another Future to wait for. Leaving while it waits — an
    exception thrown in, the future's own (cancelled), ``close()`` — calls ``abort(owner,
    future, exc)``, which cleans up and returns ``LOST`` to raise *exc*, or a value to finish
    with instead (through ``resume``, like a future's result). This is exactly what the pure
    core's ``async def`` around the same steps does; the op is a ``collections.abc.Coroutine`` (asyncio, anyio and trio take it) and
    warns, as a coroutine does, when it is dropped unawaited.

    States: 0 not started; 1 waiting on ``fut``; 2 finished; 3 delegating. (Its fields are
    declared in ``_speedups.pxd``, where `new_op`, inlined in the code that makes ops, sets
    them.)
    """

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    @property
    def __name__(self):
        return self.name.rpartition(".")[2]

    @property
    def __qualname__(self):
        return self.name

    @property
    def cr_running(self):
        return False

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
            return self.it.throw(exc)
        if self.state == 1:
            value = self.leave(exc)
            if value is not LOST:
                raise StopIteration(self.resume(self.owner, value))
        self.state = 2
        raise exc

    def close(self):
        if self.state == 3:
            self.state = 2
            close = getattr(self.it, "close", None)
            self.it = None
            if close is not None:
                close()
        elif self.state == 1:
            self.leave(GeneratorExit())
        self.state = 2

    def __repr__(self):
        return f"<{self.name}() at {id(self):#x}>"

    cdef object leave(self, object exc):
        """Stop waiting on ``fut`` by *exc*: what abort says to return instead, or LOST."""
        fut = self.fut
        self.state = 2
        self.fut = None
        self.it = None
        return self.abort(self.owner, fut, exc)

    cdef int step(self, object arg, PyObject** out) except -1:
        """Advance: 1 with the value to yield in *out*, 0 with the result in *out*."""
        cdef PySendResult sent
        cdef object r
        if self.state == 1:
            sent = PyIter_Send(<PyObject*>self.it, <PyObject*>arg, out)
            if sent == PYGEN_NEXT:
                return 1
            if sent == PYGEN_ERROR:
                # The future's own exception (it was cancelled): leave by it.
                exc = _current_exception()
                r = self.leave(exc)
                if r is LOST:
                    return -1
                _clear_exception()
                return self.finish(self.resume(self.owner, r), out)
            got = <object>out[0]  # a new reference
            Py_DECREF(got)
            out[0] = NULL
            self.fut = None
            self.it = None
            self.state = 2
            r = self.resume(self.owner, got)
            if self.loops and type(r) is _Future:
                return self.wait(r, out)
            return self.finish(r, out)
        if self.state == 3:
            sent = PyIter_Send(<PyObject*>self.it, <PyObject*>arg, out)
            if sent == PYGEN_NEXT:
                return 1
            self.state = 2
            self.it = None
            return -1 if sent == PYGEN_ERROR else 0
        if self.state != 0:
            raise RuntimeError("cannot reuse already awaited coroutine")
        self.state = 2  # if start raises
        arg0 = self.arg
        self.arg = None
        r = self.start(self.owner, arg0)
        if type(r) is _Future:
            return self.wait(r, out)
        if type(r) is Delegate:
            self.it = (<Delegate>r).awaitable.__await__()
            self.state = 3
            return self.step(None, out)
        return self.finish(r, out)

    cdef int wait(self, object fut, PyObject** out) except -1:
        self.fut = fut
        self.it = asyncmp_await(fut, _fut_await)
        self.state = 1
        return self.step(None, out)

    cdef int finish(self, object result, PyObject** out) except -1:
        self.state = 2
        Py_INCREF(result)
        out[0] = <PyObject*>result
        return 0


cdef object _current_exception():
    """The exception being raised (the error indicator's), normalised; it stays set."""
    cdef PyObject* t
    cdef PyObject* v
    cdef PyObject* tb
    PyErr_Fetch(&t, &v, &tb)
    PyErr_NormalizeException(&t, &v, &tb)
    if tb != NULL:
        PyException_SetTraceback(v, tb)
    exc = <object>v
    PyErr_Restore(t, v, tb)
    return exc


cdef void _clear_exception() noexcept:
    PyErr_Clear()


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


cdef PySendResult stepop_am_send(PyObject* op, PyObject* arg, PyObject** out) noexcept:
    cdef int r
    try:
        r = (<StepOp>op).step(<object>arg, out)
    except BaseException:
        (<StepOp>op).state = 2
        asyncmp_reraise_handled()
        return PYGEN_ERROR
    return PYGEN_NEXT if r == 1 else PYGEN_RETURN


asyncmp_set_am_send(<PyTypeObject*>StepOp, stepop_am_send)


# An op dropped unfinished gives up (or warns, never awaited) as it is freed: StepOp's
# tp_dealloc is Cython's (free list, fields) behind this test, so that a finished op — every
# one on the hot path — is freed without the error save and restore that a ``__dealloc__``
# costs each time. (Not ``__del__``: a free list would hand an object's "finalized" mark to
# the next one made in its memory.)
cdef destructor _stepop_free = (<PyTypeObject*>StepOp).tp_dealloc


cdef void _stepop_dealloc(PyObject* o) noexcept:
    cdef int state = (<StepOp>o).state
    if state == 1 or state == 3 or (state == 0 and (<StepOp>o).name is not None):
        if not _give_up_unfinished(o):
            return  # resurrected by what it ran
    _stepop_free(o)


cdef bint _give_up_unfinished(PyObject* o) noexcept:
    """Run what an unfinished op does as it goes (its fields are all still set), with the
    error indicator saved; False if that made the op alive again."""
    cdef PyObject* t
    cdef PyObject* v
    cdef PyObject* tb
    PyErr_Fetch(&t, &v, &tb)
    Py_SET_REFCNT(o, 1)  # alive while it runs
    _leave_unfinished(<StepOp>o)
    PyErr_Restore(t, v, tb)
    if _refcount(o) > 1:
        Py_SET_REFCNT(o, _refcount(o) - 1)
        return False
    Py_SET_REFCNT(o, 0)
    return True


cdef void _leave_unfinished(StepOp op) noexcept:
    # An error here is reported as unraisable, as a coroutine's finalizer's is.
    if op.state == 0:
        warnings.warn(f"coroutine '{op.name}' was never awaited", RuntimeWarning, stacklevel=1)
    else:
        op.close()


(<PyTypeObject*>StepOp).tp_dealloc = _stepop_dealloc
collections.abc.Coroutine.register(StepOp)
