/*
 * _poller.c - the CPython extension over libpoller's core API.
 *
 * One type, Poller(backend="auto"), wraps a poller.  Each registration's
 * data pointer holds a strong reference to a Python object (the fd itself
 * by default, or the selectors.SelectorKey for the selector classes), so
 * select_keys() builds its [(key, events)] list straight from the reports,
 * with no dict lookup per ready fd: that is where the speed over the
 * standard library's selectors comes from.
 *
 * Waits release the GIL.  A signal interrupts the wait (the poller is opened
 * with POLLER_OPT_REPORT_EINTR): the handlers run (PyErr_CheckSignals), an
 * exception they raise propagates, otherwise the wait resumes with the time
 * left (PEP 475).  Two threads polling one object get RuntimeError, as the
 * standard library's poll objects do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "poller.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#define MAX_EVENTS_DEFAULT 1024

typedef struct {
  PyObject_HEAD poller *p;
  poller_event *events;
  int nevents;
  int running;
} PollerObject;

static PyObject *raise_errno(int err) {
  errno = err < 0 ? -err : err;
  return PyErr_SetFromErrno(PyExc_OSError);
}

static int check_open(PollerObject *self) {
  if (!self->p) {
    PyErr_SetString(PyExc_ValueError, "I/O operation on closed poller");
    return -1;
  }
  return 0;
}

static void drop_all(PollerObject *self) {
  poller_event key;
  int fd = -1;
  while (poller_next(self->p, fd, &key) == 0) {
    fd = key.fd;
    Py_XDECREF((PyObject *)key.data);
    while (poller_depth(self->p, fd) > 1) {
      poller_pop(self->p, fd);
      poller_event top;
      if (poller_get(self->p, fd, &top) == 0)
        Py_XDECREF((PyObject *)top.data);
    }
  }
}

static void Poller_dealloc(PollerObject *self) {
  if (self->p) {
    drop_all(self);
    poller_close(self->p);
  }
  PyMem_Free(self->events);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Poller_init(PollerObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"backend", "sizehint", NULL};
  const char *name = "auto";
  int sizehint = MAX_EVENTS_DEFAULT;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|si", kwlist, &name, &sizehint))
    return -1;
  int b = poller_backend_from_name(name);
  if (b < 0) {
    PyErr_Format(PyExc_ValueError, "unknown backend %s", name);
    return -1;
  }
  if (sizehint < 1)
    sizehint = MAX_EVENTS_DEFAULT;
  if (self->p) {
    PyErr_SetString(PyExc_RuntimeError, "already initialised");
    return -1;
  }
  int r = poller_open(&self->p, (enum poller_backend)b);
  if (r < 0) {
    self->p = NULL;
    raise_errno(r);
    return -1;
  }
  poller_option(self->p, POLLER_OPT_REPORT_EINTR, 1);
  self->events = PyMem_Malloc((size_t)sizehint * sizeof(poller_event));
  if (!self->events) {
    PyErr_NoMemory();
    return -1;
  }
  self->nevents = sizehint;
  return 0;
}

/* fd from an int or an object with fileno(), as the stdlib does. */
static int get_fd(PyObject *obj) {
  int fd = PyObject_AsFileDescriptor(obj);
  return fd; /* -1 with ValueError/TypeError set on failure */
}

static int get_mask(PyObject *obj, unsigned *mask) {
  unsigned long m = PyLong_AsUnsignedLong(obj);
  if (m == (unsigned long)-1 && PyErr_Occurred()) {
    if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
      PyErr_Clear();
      PyErr_SetString(PyExc_ValueError, "invalid events mask");
    }
    return -1;
  }
  if (m > 0xffffu) {
    PyErr_SetString(PyExc_ValueError, "invalid events mask");
    return -1;
  }
  *mask = (unsigned)m;
  return 0;
}

/* register(fd, events, data=None) and push(...): data defaults to the fd
 * number.  `push` selects poller_push (the registration stack) over
 * poller_add. */
static PyObject *add_or_push(PollerObject *self, PyObject *args, int push) {
  PyObject *fdobj, *maskobj, *data = NULL;
  unsigned mask;
  if (!PyArg_ParseTuple(args, "OO|O", &fdobj, &maskobj, &data))
    return NULL;
  if (check_open(self) < 0)
    return NULL;
  int fd = get_fd(fdobj);
  if (fd < 0 || get_mask(maskobj, &mask) < 0)
    return NULL;
  PyObject *d = data ? data : PyLong_FromLong(fd);
  if (!d)
    return NULL;
  if (data)
    Py_INCREF(d);
  int r = push ? poller_push(self->p, fd, mask, d)
               : poller_add(self->p, fd, mask, d);
  if (r < 0) {
    Py_DECREF(d);
    if (r == -EINVAL) {
      PyErr_SetString(PyExc_ValueError, "invalid events mask");
      return NULL;
    }
    return raise_errno(r);
  }
  Py_RETURN_NONE;
}

static PyObject *Poller_register(PollerObject *self, PyObject *args) {
  return add_or_push(self, args, 0);
}

static PyObject *Poller_modify(PollerObject *self, PyObject *args) {
  PyObject *fdobj, *maskobj, *data = NULL;
  unsigned mask;
  if (!PyArg_ParseTuple(args, "OO|O", &fdobj, &maskobj, &data))
    return NULL;
  if (check_open(self) < 0)
    return NULL;
  int fd = get_fd(fdobj);
  if (fd < 0 || get_mask(maskobj, &mask) < 0)
    return NULL;
  poller_event key;
  int r = poller_get(self->p, fd, &key);
  if (r < 0)
    return raise_errno(r);
  PyObject *d = data ? data : (PyObject *)key.data;
  Py_INCREF(d);
  r = poller_mod(self->p, fd, mask, d);
  if (r < 0) {
    Py_DECREF(d);
    if (r == -EINVAL) {
      PyErr_SetString(PyExc_ValueError, "invalid events mask");
      return NULL;
    }
    return raise_errno(r);
  }
  Py_XDECREF((PyObject *)key.data);
  Py_RETURN_NONE;
}

/* unregister(fd): removes the whole registration stack. */
static PyObject *Poller_unregister(PollerObject *self, PyObject *fdobj) {
  if (check_open(self) < 0)
    return NULL;
  int fd = get_fd(fdobj);
  if (fd < 0)
    return NULL;
  if (poller_depth(self->p, fd) == 0)
    return raise_errno(-ENOENT);
  while (poller_depth(self->p, fd) > 0) {
    poller_event key;
    poller_get(self->p, fd, &key);
    poller_pop(self->p, fd);
    Py_XDECREF((PyObject *)key.data);
  }
  Py_RETURN_NONE;
}

static PyObject *Poller_push(PollerObject *self, PyObject *args) {
  return add_or_push(self, args, 1);
}

static PyObject *Poller_pop(PollerObject *self, PyObject *fdobj) {
  if (check_open(self) < 0)
    return NULL;
  int fd = get_fd(fdobj);
  if (fd < 0)
    return NULL;
  poller_event key;
  int r = poller_get(self->p, fd, &key);
  if (r < 0)
    return raise_errno(r);
  poller_pop(self->p, fd);
  Py_XDECREF((PyObject *)key.data);
  return PyLong_FromLong(poller_depth(self->p, fd));
}

static PyObject *Poller_get(PollerObject *self, PyObject *fdobj) {
  if (check_open(self) < 0)
    return NULL;
  int fd = get_fd(fdobj);
  if (fd < 0)
    return NULL;
  poller_event key;
  int r = poller_get(self->p, fd, &key);
  if (r < 0)
    return raise_errno(r);
  return Py_BuildValue("(IO)", key.events, (PyObject *)key.data);
}

/* Timeout in seconds (None: block) to whole ms, rounded up (lessons 12). */
static int timeout_ms_of(PyObject *obj, double *deadline, int *ms) {
  if (obj == Py_None) {
    *ms = -1;
    *deadline = -1;
    return 0;
  }
  double t = PyFloat_AsDouble(obj);
  if (t == -1 && PyErr_Occurred()) {
    if (PyErr_ExceptionMatches(PyExc_TypeError)) {
      PyErr_Clear();
      PyErr_SetString(PyExc_TypeError, "timeout must be a number or None");
    }
    return -1;
  }
  if (isnan(t)) {
    PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
    return -1;
  }
  if (t <= 0) {
    *ms = 0;
    *deadline = 0;
    return 0;
  }
  double m = ceil(t * 1e3);
  *ms = m > INT32_MAX ? INT32_MAX : (int)m;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  *deadline = (double)ts.tv_sec + ts.tv_nsec / 1e9 + t;
  return 0;
}

static int remaining_ms(double deadline) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double left = deadline - ((double)ts.tv_sec + ts.tv_nsec / 1e9);
  if (left <= 0)
    return 0;
  double m = ceil(left * 1e3);
  return m > INT32_MAX ? INT32_MAX : (int)m;
}

/* The wait: GIL released, signals handled, PEP 475 retries.  Returns the
 * number of reports or -1 with an exception set. */
static int do_wait(PollerObject *self, PyObject *timeout, int maxevents) {
  double deadline;
  int ms;
  if (check_open(self) < 0 || timeout_ms_of(timeout, &deadline, &ms) < 0)
    return -1;
  if (maxevents <= 0)
    maxevents = self->nevents;
  if (maxevents > self->nevents) {
    /* Grown outside the wait, so every ready fd fits in one call. */
    poller_event *ev =
        PyMem_Realloc(self->events, (size_t)maxevents * sizeof *ev);
    if (!ev) {
      PyErr_NoMemory();
      return -1;
    }
    self->events = ev;
    self->nevents = maxevents;
  }
  if (self->running) {
    PyErr_SetString(PyExc_RuntimeError, "concurrent poll() invocation");
    return -1;
  }
  self->running = 1;
  int n = 0;
  for (;;) {
    Py_BEGIN_ALLOW_THREADS n = poller_wait(self->p, self->events, maxevents, ms);
    Py_END_ALLOW_THREADS if (n != -EINTR) break;
    if (PyErr_CheckSignals() < 0) {
      self->running = 0;
      return -1;
    }
    if (ms > 0)
      ms = remaining_ms(deadline);
  }
  self->running = 0;
  if (n < 0) {
    raise_errno(n);
    return -1;
  }
  return n;
}

/* poll(timeout=None, maxevents=-1) -> [(fd, events)] */
static PyObject *Poller_poll(PollerObject *self, PyObject *args) {
  PyObject *timeout = Py_None;
  int maxevents = -1;
  if (!PyArg_ParseTuple(args, "|Oi", &timeout, &maxevents))
    return NULL;
  int n = do_wait(self, timeout, maxevents);
  if (n < 0)
    return NULL;
  PyObject *list = PyList_New(n);
  if (!list)
    return NULL;
  for (int i = 0; i < n; i++) {
    PyObject *t = Py_BuildValue("(iI)", self->events[i].fd,
                                self->events[i].events);
    if (!t) {
      Py_DECREF(list);
      return NULL;
    }
    PyList_SET_ITEM(list, i, t);
  }
  return list;
}

/* select_keys(timeout=None, maxevents=-1) -> [(data, ready)] where ready
 * is the selectors' EVENT_READ/EVENT_WRITE view (ERR and HUP count as
 * both, as EpollSelector does), masked by the key's own events (the data
 * object's .events when it has one, else the interest). */
static PyObject *Poller_select_keys(PollerObject *self, PyObject *args) {
  PyObject *timeout = Py_None;
  int maxevents = -1;
  if (!PyArg_ParseTuple(args, "|Oi", &timeout, &maxevents))
    return NULL;
  int n = do_wait(self, timeout, maxevents);
  if (n < 0)
    return NULL;
  PyObject *list = PyList_New(0);
  if (!list)
    return NULL;
  for (int i = 0; i < n; i++) {
    poller_event *ev = &self->events[i];
    unsigned bits = ev->events, ready = 0;
    if (bits & ~(unsigned)POLLER_IN)
      ready |= 2;
    if (bits & ~(unsigned)POLLER_OUT)
      ready |= 1;
    poller_event key;
    if (poller_get(self->p, ev->fd, &key) < 0 || key.gen != ev->gen)
      continue;
    ready &= key.events & 3u;
    if (!ready)
      continue;
    PyObject *t = PyTuple_New(2);
    if (!t) {
      Py_DECREF(list);
      return NULL;
    }
    PyObject *data = (PyObject *)ev->data;
    Py_INCREF(data);
    PyTuple_SET_ITEM(t, 0, data);
    PyTuple_SET_ITEM(t, 1, PyLong_FromUnsignedLong(ready));
    if (PyList_Append(list, t) < 0) {
      Py_DECREF(t);
      Py_DECREF(list);
      return NULL;
    }
    Py_DECREF(t);
  }
  return list;
}

static PyObject *Poller_wakeup(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  if (check_open(self) < 0)
    return NULL;
  poller_wakeup(self->p);
  Py_RETURN_NONE;
}

static PyObject *Poller_fileno(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  if (check_open(self) < 0)
    return NULL;
  return PyLong_FromLong(poller_fd(self->p));
}

static PyObject *Poller_close(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  if (self->running) {
    PyErr_SetString(PyExc_RuntimeError, "close() during poll()");
    return NULL;
  }
  if (self->p) {
    drop_all(self);
    poller_close(self->p);
    self->p = NULL;
  }
  Py_RETURN_NONE;
}

static PyObject *Poller_get_closed(PollerObject *self, void *c) {
  (void)c;
  return PyBool_FromLong(self->p == NULL);
}

static PyObject *Poller_get_backend(PollerObject *self, void *c) {
  (void)c;
  if (check_open(self) < 0)
    return NULL;
  return PyUnicode_FromString(poller_backend_name(poller_backend(self->p)));
}

static PyObject *Poller_len(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  return PyLong_FromSize_t(self->p ? poller_count(self->p) : 0);
}

static PyObject *Poller_stats(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  if (check_open(self) < 0)
    return NULL;
  poller_stats st;
  poller_stats_get(self->p, &st);
  return Py_BuildValue("{sKsKsKsKsKsK}", "waits", st.waits, "syscalls",
                       st.syscalls, "events", st.events, "changes",
                       st.changes, "eintr", st.eintr, "stale", st.stale);
}

static PyMethodDef Poller_methods[] = {
    {"stats", (PyCFunction)Poller_stats, METH_NOARGS,
     "stats() -> the poller's counters (waits, syscalls, events, ...)"},
    {"register", (PyCFunction)Poller_register, METH_VARARGS,
     "register(fd, events, data=None): add a registration"},
    {"modify", (PyCFunction)Poller_modify, METH_VARARGS,
     "modify(fd, events, data=None): change the top registration"},
    {"unregister", (PyCFunction)Poller_unregister, METH_O,
     "unregister(fd): remove fd (its whole stack)"},
    {"push", (PyCFunction)Poller_push, METH_VARARGS,
     "push(fd, events, data=None): push onto fd's registration stack"},
    {"pop", (PyCFunction)Poller_pop, METH_O,
     "pop(fd) -> depth left: pop fd's registration stack"},
    {"get", (PyCFunction)Poller_get, METH_O, "get(fd) -> (events, data)"},
    {"poll", (PyCFunction)Poller_poll, METH_VARARGS,
     "poll(timeout=None, maxevents=-1) -> [(fd, events)], timeout in s"},
    {"select_keys", (PyCFunction)Poller_select_keys, METH_VARARGS,
     "select_keys(timeout=None, maxevents=-1) -> [(data, ready)]"},
    {"wakeup", (PyCFunction)Poller_wakeup, METH_NOARGS,
     "wakeup(): make a poll in progress return"},
    {"fileno", (PyCFunction)Poller_fileno, METH_NOARGS,
     "fileno() -> the kernel object's fd, or -1"},
    {"close", (PyCFunction)Poller_close, METH_NOARGS, "close()"},
    {"count", (PyCFunction)Poller_len, METH_NOARGS, "registered fds"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Poller_getset[] = {
    {"closed", (getter)Poller_get_closed, NULL, "True once closed", NULL},
    {"backend", (getter)Poller_get_backend, NULL, "the backend's name", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject PollerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "poller._poller.Poller",
    .tp_basicsize = sizeof(PollerObject),
    .tp_dealloc = (destructor)Poller_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Poller(backend='auto'): a libpoller instance",
    .tp_methods = Poller_methods,
    .tp_getset = Poller_getset,
    .tp_init = (initproc)Poller_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *mod_available(PyObject *m, PyObject *noargs) {
  (void)m;
  (void)noargs;
  PyObject *list = PyList_New(0);
  unsigned bits = poller_available();
  for (int b = 1; b <= POLLER_URING; b++)
    if (bits & (1u << b)) {
      PyObject *s = PyUnicode_FromString(poller_backend_name(b));
      PyList_Append(list, s);
      Py_DECREF(s);
    }
  return list;
}

static PyMethodDef module_methods[] = {
    {"available", mod_available, METH_NOARGS,
     "available() -> names of the backends usable here"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_poller",
                                       "libpoller bindings", -1,
                                       module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__poller(void) {
  if (PyType_Ready(&PollerType) < 0)
    return NULL;
  PyObject *m = PyModule_Create(&moduledef);
  if (!m)
    return NULL;
  Py_INCREF(&PollerType);
  PyModule_AddObject(m, "Poller", (PyObject *)&PollerType);
  PyModule_AddIntConstant(m, "IN", POLLER_IN);
  PyModule_AddIntConstant(m, "OUT", POLLER_OUT);
  PyModule_AddIntConstant(m, "PRI", POLLER_PRI);
  PyModule_AddIntConstant(m, "ERR", POLLER_ERR);
  PyModule_AddIntConstant(m, "HUP", POLLER_HUP);
  PyModule_AddIntConstant(m, "RDHUP", POLLER_RDHUP);
  PyModule_AddIntConstant(m, "NVAL", POLLER_NVAL);
  PyModule_AddIntConstant(m, "ET", POLLER_ET);
  PyModule_AddIntConstant(m, "ONESHOT", POLLER_ONESHOT);
  return m;
}
