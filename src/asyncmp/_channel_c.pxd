# Augments _channel_py.py — the channel's one source — when Cython compiles it into
# asyncmp._channel_c (setup.py): C types for the shared state and a request, C functions for
# the hot paths, and the primitives from asyncmp._speedups in place of the pure-Python ones
# (`if not cython.compiled:` in the source skips their import).
cimport cython
from cpython.object cimport PyObject, PyTypeObject, destructor
from cpython.ref cimport Py_DECREF

from asyncmp._speedups cimport (
    LOST,
    Counter,
    abort_fn,
    step_fn,
    Delegate,
    Mutex,
    Parker,
    check_signals,
    checkin,
    checkout,
    deque_append,
    deque_popleft,
    fut_done,
    fut_get_loop,
    fut_set_result,
    is_running_here,
    running_loop,
    thread_ident,
    new_op,
    trio_may_run,
)

cdef object _Future
cdef object _BaseEventLoop
cdef object _Failure
cdef object _monotonic
cdef int QUEUED
cdef int ACTIVE
cdef object _hooks
cdef dict _in_flight
cdef type _REPLY_CONTEXT

cdef bint settle(object to, object value) except -1
cdef object reclaim(object fut, object exc)
cdef object new_request(ChannelState state, object msg, object to, unsigned long tid)
cdef bint _withdrawn(_Request node) except -1
cdef _BlockingCall _new_call(Mutex lock, Parker parker)
cdef object _pop_oldest(dict waiters)
cdef object _oldest(dict waiters)
cdef _deliver_surely(object waiter, object value, object undelivered)
cdef _wake_all_surely(list waiters)
cdef _warn_stopped_loop(_Request node)
cdef _schedule(object loop, _HandOff hand_off)
# The steps of send and wait, typed: the shell passes them only what they expect (a cast of
# the function pointers to the shell's object-typed ones, in the source).
cdef object _send_start(_ClientFields client, object msg)
cdef object _send_finish(object client, object value)
cdef object _send_abort(object client, object fut, object exc)
cdef object _wait_start(_ServerFields server, object _unused)
cdef object _wait_resume(_ServerFields server, object got)
cdef object _wait_abort(_ServerFields server, object waiter, object exc)


@cython.final
@cython.freelist(8)  # one per waiting thread
cdef class _BlockingCall:
    cdef Mutex lock
    cdef Parker parker
    cdef public int state
    cdef public object value

    cpdef bint settle(self, object value) except -1
    cpdef bint leave(self) except -1


cdef class _Request:
    cdef public ChannelState _channel
    cdef public object _msg
    cdef public int _phase
    cdef public object _to
    cdef public unsigned long _tid


@cython.final
cdef class _Resolve:
    cdef object fut
    cdef object value


@cython.final
cdef class _HandOff:
    cdef object fut
    cdef object node
    cdef ChannelState state

    cpdef give_back(self)


@cython.final
cdef class ChannelState:
    cdef public Mutex lock
    cdef public object queue
    cdef public object max_queued
    cdef public Py_ssize_t clients
    cdef public Counter weak_made
    cdef public Counter weak_dropped
    cdef public Py_ssize_t taken
    cdef public Counter answered
    cdef public bint server_closed
    cdef public bint stopped
    cdef public dict server_waiters
    cdef public object reason
    cdef public object cause

    cpdef push(self, _Request node, bint nowait, object loop)
    cdef _hand_to(self, object waiter, _Request node, object loop)
    cpdef hand_over(self, object waiter, _Request node)
    cpdef _purge(self)
    cpdef take(self, object ended)
    cpdef handed(self, _Request node)
    cpdef requeue(self, _Request node)
    cpdef bint unpark(self, object waiter) except -1
    cpdef leave_parked(self, object waiter)
    cpdef receive_blocking(self, object ended, object timeout)
    cdef _returning(self, tuple item)
    cpdef try_take(self, object ended)
    cpdef drop_client(self, object client)
    cpdef close_server(self, object reason=*, object cause=*)
    cpdef disappeared(self, str default)
    cpdef bint add_client(self, bint only_if_alive, object client) except -1
    cpdef statistics(self, bint locked=*)


cdef class _ClientFields:
    cdef public ChannelState _channel
    cdef public bint _closed


cdef class _ServerFields:
    cdef public ChannelState _channel
    cdef public object _ended
    cdef public object _loop


cdef extern from *:
    """
    /* An extension type says its module through tp_name ("module.Name"): the channel's
       types name the facade, asyncmp._channel, on both cores (see _channel_py._name_homes).
       The name must outlive the type: it is copied once and never freed. */
    static int asyncmp_set_type_module(PyObject *type, PyObject *module) {
        PyTypeObject *t = (PyTypeObject *)type;
        const char *dot = strrchr(t->tp_name, '.');
        const char *mod = PyUnicode_AsUTF8(module);
        char *name;
        if (mod == NULL) return -1;
        dot = dot ? dot + 1 : t->tp_name;
        name = (char *)PyMem_RawMalloc(strlen(mod) + strlen(dot) + 2);
        if (name == NULL) { PyErr_NoMemory(); return -1; }
        sprintf(name, "%s.%s", mod, dot);
        t->tp_name = name;
        PyType_Modified(t);
        return 0;
    }
    """
    int _set_type_module "asyncmp_set_type_module" (object type, object module) except -1


cdef extern from *:
    """
    /* Give a Cython function another code object: the compiled `send` and `wait`, which
       return a StepOp, wear the code of the `async def` they stand for, so that
       `inspect.iscoroutinefunction` (which reads the code's flags) and `inspect.signature`
       see that function. A macro, expanded where it is used, after Cython's own
       definition of its function type. */
    static int asyncmp_store(PyObject **slot, PyObject *value) {
        PyObject *old = *slot;
        Py_INCREF(value);
        *slot = value;
        Py_XDECREF(old);
        return 0;
    }
    #define asyncmp_set_code(f, code) \
        asyncmp_store(&((__pyx_CyFunctionObject *)(f))->func_code, (code))
    """
    int _set_code "asyncmp_set_code" (object function, object code) except -1


cdef extern from *:
    """
    /* Put *value* in a type's dict without touching its slots (type.__setattr__ would make
       a `__del__` the type's finalizer, through the interpreter): what `inspect` and
       `help()` read, while the C slot keeps running. */
    static int asyncmp_show_in_type(PyObject *type, PyObject *name, PyObject *value) {
        PyTypeObject *t = (PyTypeObject *)type;
        if (PyDict_SetItem(t->tp_dict, name, value) < 0) return -1;
        PyType_Modified(t);
        return 0;
    }
    """
    int _show_in_type "asyncmp_show_in_type" (object type, str name, object value) except -1


cdef extern from *:
    """
    /* _Request's C finalizer (its tp_finalize slot), saved before its face is shown: a
       subclass made later finds that face in the dict and gets CPython's slot_tp_finalize,
       which calls the face, which calls this (not the object's own slot: that would be the
       face again, for ever). */
    static destructor asyncmp_request_finalize = NULL;
    static void asyncmp_run_finalizer(PyObject *o) {
        if (asyncmp_request_finalize != NULL) asyncmp_request_finalize(o);
    }
    static int asyncmp_save_finalizer(PyObject *type) {
        asyncmp_request_finalize = ((PyTypeObject *)type)->tp_finalize;
        return 0;
    }
    """
    void _run_finalizer "asyncmp_run_finalizer" (object o)
    int _save_finalizer "asyncmp_save_finalizer" (object type) except -1


# A ReplyContext is freed without the finalizer's round trip once it is answered (every
# request on the hot path): the heap type's own tp_dealloc (CPython's subtype_dealloc) would
# call the finalizer, which saves and restores the error indicator, for nothing. Its
# replacement calls the finalizer only for a context still unanswered (NoReply), then
# _Request's dealloc (which frees the fields and the memory, and runs no finalizer itself:
# the object's type's dealloc is not its own), and lets go of the type, as each instance of a
# heap type holds it. (subtype_dealloc cannot be called from here: it looks for the base's
# dealloc by skipping its own, and would find this one.)
cdef extern from *:
    """
    static destructor asyncmp_request_dealloc = NULL;
    """
    destructor asyncmp_request_dealloc
    int PyObject_CallFinalizerFromDealloc(PyObject*)


cdef inline void _free_reply_context(PyObject* o) noexcept:
    cdef PyTypeObject* tp = o.ob_type
    if (<_Request>o)._to is not None:
        if PyObject_CallFinalizerFromDealloc(o) < 0:
            return  # made alive again by the finalizer
    asyncmp_request_dealloc(o)
    Py_DECREF(<object><PyObject*>tp)


cdef inline int _free_answered_quickly(object context, object request) except -1:
    global asyncmp_request_dealloc
    asyncmp_request_dealloc = (<PyTypeObject*>request).tp_dealloc
    (<PyTypeObject*>context).tp_dealloc = _free_reply_context
    return 0
