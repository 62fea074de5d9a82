# The primitives of asyncmp's compiled core (_speedups.pyx), for the Cython code that uses
# them: the channel compiled from its Python source (_channel_c.pxd cimports these in place
# of asyncmp._lowlevel._primitives).
from cpython.object cimport PyObject
from cpython.pythread cimport PyThread_type_lock

cdef object running_loop()
cdef bint is_running_here(object loop) except -1
cdef bint trio_may_run() except -1
cdef unsigned long thread_ident() noexcept
cdef int check_signals() except -1
cdef object fut_done(object fut)
cdef object fut_get_loop(object fut)
cdef object fut_set_result(object fut, object value)
cdef object deque_append(object queue, object item)
cdef object deque_popleft(object queue)


cdef class Counter:
    cdef Py_ssize_t _n

    cpdef add(self)
    cpdef Py_ssize_t value(self) except -1


cdef class Mutex:
    cdef PyThread_type_lock _handoff
    cdef bint _held
    cdef Py_ssize_t _waiting

    cdef bint wait(self, long long micros) except -1
    cpdef bint acquire(self, bint blocking=*, double timeout=*) except -1
    cpdef release(self)


cdef class Parker:
    cdef PyThread_type_lock _lock
    cdef public object value

    cpdef bint wake(self, object value=*) except -1
    cpdef bint wait(self, double timeout) except -1
    cpdef consume(self)


cdef Parker checkout()
cdef int checkin(Parker parker) except -1


ctypedef object (*step_fn)(object owner, object value)
ctypedef object (*abort_fn)(object owner, object fut, object exc)


cdef class Delegate:
    cdef public object awaitable


cdef object LOST


cimport cython


@cython.final
cdef class StepOp:
    cdef object owner
    cdef object arg
    cdef object fut
    cdef object it  # the future's iterator, or the delegate's, while waiting
    cdef step_fn start
    cdef step_fn resume
    cdef abort_fn abort
    cdef str name
    cdef int state
    cdef bint loops

    cdef object leave(self, object exc)
    cdef int step(self, object arg, PyObject** out) except -1
    cdef int wait(self, object fut, PyObject** out) except -1
    cdef int finish(self, object result, PyObject** out) except -1


cdef inline object new_op(
    object owner, object arg, step_fn start, step_fn resume, abort_fn abort, bint loops, str name
):
    """A fresh `StepOp` (see _speedups.pyx) for the steps *start*, *resume*, *abort*."""
    cdef StepOp op = StepOp.__new__(StepOp)
    op.owner = owner
    op.arg = arg
    op.start = start
    op.resume = resume
    op.abort = abort
    op.loops = loops
    op.name = name
    return op
