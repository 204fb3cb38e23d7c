/* SPDX-License-Identifier: MIT */
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
 * left (PEP 475).  Two threads polling one object get
 * RuntimeError, as the standard library's poll objects do (selectmodule.c's
 * poll_running); and because libpoller lets one thread at a time use a
 * poller, changing the registrations from another thread while a poll runs
 * raises RuntimeError too instead of racing with the wait.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "poller.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS_DEFAULT 1024

typedef struct {
  PyObject_HEAD poller *p;
  poller_event *events;
  int nevents;
  /* Set while a poll (the wait and the building of its result) runs;
   * owner is that thread, in process running_pid.  The same thread may come
   * back in only from a signal handler or a finalizer, when no wait is in
   * progress.  A fork taken while another thread polls leaves running set
   * in the child, where that thread does not exist: the pid tells. */
  int running;
  unsigned long owner;
  pid_t running_pid;
  /* Clamp timeouts above INT32_MAX ms instead of raising OverflowError (the
   * select backend, as select.select accepts them). */
  int clamp;
  /* The references the registrations hold.  libpoller's data pointers are
   * borrowed from these dicts: tops maps fd -> the data of the registration
   * in force, below maps fd -> [data of the entries under it], bottom
   * first (only for stacks deeper than one).  libpoller never removes a
   * registration on its own (a change the kernel refuses disarms it and
   * reports NVAL; it stays until unregister() or pop()), so the dicts
   * follow the caller's calls alone. */
  PyObject *tops;
  PyObject *below;
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

/* Whether a poll is in progress in this process.  In a child forked while
 * another thread polled, the flag is stale: it is cleared, so the child can
 * reinit(), poll() or close() the poller. */
static int is_running(PollerObject *self) {
  if (self->running && self->running_pid != getpid())
    self->running = 0;
  return self->running;
}

/* Registrations may be read or changed unless another thread is inside
 * poll(): libpoller's table belongs to the waiting thread then.  Callers
 * check after obtaining the fd, since fileno() is Python code that may let
 * another thread start a poll (or close this poller). */
static int check_mutable(PollerObject *self) {
  if (check_open(self) < 0)
    return -1;
  if (is_running(self) && self->owner != PyThread_get_thread_ident()) {
    PyErr_SetString(PyExc_RuntimeError,
                    "registrations changed during a concurrent poll()");
    return -1;
  }
  return 0;
}

/* Closes the poller and drops the references its registrations held.  The
 * object is detached first and the dicts are released last, because a
 * finalizer may run arbitrary code, this object's methods included. */
static void close_poller(PollerObject *self) {
  poller *p = self->p;
  self->p = NULL;
  poller_close(p);
  PyObject *tops = self->tops, *below = self->below;
  self->tops = self->below = NULL;
  Py_XDECREF(tops);
  Py_XDECREF(below);
}

static int Poller_traverse(PollerObject *self, visitproc visit, void *arg) {
  /* The references live in the dicts, which only code holding the GIL
   * touches, so they are visited even while another thread waits. */
  Py_VISIT(self->tops);
  Py_VISIT(self->below);
  return 0;
}

static int Poller_clear(PollerObject *self) {
  if (self->p && !is_running(self))
    close_poller(self);
  return 0;
}

static void Poller_dealloc(PollerObject *self) {
  PyObject_GC_UnTrack(self);
  if (self->p || self->tops || self->below)
    close_poller(self);
  PyMem_Free(self->events);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Poller_init(PollerObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"backend", "sizehint", NULL};
  PyObject *backend = NULL;
  int sizehint = MAX_EVENTS_DEFAULT;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|Oi", kwlist, &backend,
                                   &sizehint))
    return -1;
  int b = POLLER_AUTO;
  if (backend && PyUnicode_Check(backend)) {
    const char *name = PyUnicode_AsUTF8(backend);
    if (!name)
      return -1;
    b = poller_backend_from_name(name);
    if (b < 0) {
      PyErr_Format(PyExc_ValueError, "unknown backend %R", backend);
      return -1;
    }
  } else if (backend && PyLong_Check(backend)) {
    long v = PyLong_AsLong(backend);
    if (v == -1 && PyErr_Occurred())
      return -1;
    if (v < POLLER_AUTO || v > POLLER_URING) {
      PyErr_Format(PyExc_ValueError, "unknown backend %ld", v);
      return -1;
    }
    b = (int)v;
  } else if (backend && backend != Py_None) {
    PyErr_Format(PyExc_TypeError, "backend must be a str or int, not %.100s",
                 Py_TYPE(backend)->tp_name);
    return -1;
  }
  if (sizehint < 1)
    sizehint = MAX_EVENTS_DEFAULT;
  if (self->p || self->tops) {
    PyErr_SetString(PyExc_RuntimeError, "already initialised");
    return -1;
  }
  poller_event *ev = PyMem_Malloc((size_t)sizehint * sizeof *ev);
  PyObject *tops = PyDict_New(), *below = PyDict_New();
  if (!ev || !tops || !below) {
    PyMem_Free(ev);
    Py_XDECREF(tops);
    Py_XDECREF(below);
    PyErr_NoMemory();
    return -1;
  }
  int r = poller_open(&self->p, (enum poller_backend)b);
  if (r < 0) {
    PyMem_Free(ev);
    Py_DECREF(tops);
    Py_DECREF(below);
    self->p = NULL;
    raise_errno(r);
    return -1;
  }
  poller_option(self->p, POLLER_OPT_REPORT_EINTR, 1);
  PyMem_Free(self->events);
  self->events = ev;
  self->nevents = sizehint;
  self->tops = tops;
  self->below = below;
  self->clamp = poller_backend(self->p) == POLLER_SELECT;
  return 0;
}

/* fd from an int or an object with fileno(), as the standard library does:
 * -1 with ValueError (negative) or TypeError set on failure. */
static int get_fd(PyObject *obj) { return PyObject_AsFileDescriptor(obj); }

static int get_mask(PyObject *obj, unsigned *mask) {
  if (!PyLong_Check(obj)) {
    PyErr_Format(PyExc_TypeError, "events mask must be an int, not %.100s",
                 Py_TYPE(obj)->tp_name);
    return -1;
  }
  unsigned long m = PyLong_AsUnsignedLong(obj);
  if (m == (unsigned long)-1 && PyErr_Occurred()) {
    if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
      PyErr_Clear();
      PyErr_SetString(PyExc_ValueError, "invalid events mask");
    }
    return -1;
  }
  if (m > 0xffffffffu) {
    PyErr_SetString(PyExc_ValueError, "invalid events mask");
    return -1;
  }
  *mask = (unsigned)m;
  return 0;
}

/* A libpoller error as the standard library spells it: a bad mask is
 * ValueError, anything else OSError with the errno (FileExistsError,
 * FileNotFoundError, ...). */
static PyObject *raise_for(int r) {
  if (r == -EINVAL) {
    PyErr_SetString(PyExc_ValueError, "invalid events mask");
    return NULL;
  }
  return raise_errno(r);
}

/* The fd's entry in `dict`, or NULL (no exception) when it has none. */
static PyObject *fd_item(PyObject *dict, int fd) {
  PyObject *k = PyLong_FromLong(fd);
  if (!k) {
    PyErr_Clear();
    return NULL;
  }
  PyObject *v = PyDict_GetItemWithError(dict, k);
  Py_DECREF(k);
  if (!v)
    PyErr_Clear();
  return v;
}

/* Sets dict[fd] = v (v NULL: deletes it, absent or not).  Returns 0 or -1
 * with an exception set.  Replacing or deleting may run a finalizer, so
 * callers make libpoller's state final first. */
static int fd_store(PyObject *dict, int fd, PyObject *v) {
  PyObject *k = PyLong_FromLong(fd);
  if (!k)
    return -1;
  int r;
  if (v) {
    r = PyDict_SetItem(dict, k, v);
  } else {
    r = PyDict_DelItem(dict, k);
    if (r < 0 && PyErr_ExceptionMatches(PyExc_KeyError)) {
      PyErr_Clear();
      r = 0;
    }
  }
  Py_DECREF(k);
  return r;
}

/* Forgets the references of fd (the whole stack).  Returns 0 or -1. */
static int forget_fd(PollerObject *self, int fd) {
  if (!self->tops)
    return 0;
  /* Take both out before dropping either: a finalizer may re-register. */
  PyObject *top = fd_item(self->tops, fd), *lst = fd_item(self->below, fd);
  Py_XINCREF(top);
  Py_XINCREF(lst);
  int r = 0;
  if ((top && fd_store(self->tops, fd, NULL) < 0) ||
      (lst && fd_store(self->below, fd, NULL) < 0))
    r = -1;
  Py_XDECREF(top);
  Py_XDECREF(lst);
  return r;
}

/* register(fd, events, data=None) and push(...): data defaults to the fd
 * number.  `push` selects poller_push (the registration stack) over
 * poller_add. */
static PyObject *add_or_push(PollerObject *self, PyObject *args, int push) {
  PyObject *fdobj, *maskobj, *data = NULL;
  unsigned mask;
  if (!PyArg_ParseTuple(args, "OO|O", &fdobj, &maskobj, &data))
    return NULL;
  int fd = get_fd(fdobj);
  if (fd < 0 || check_mutable(self) < 0 || get_mask(maskobj, &mask) < 0)
    return NULL;
  PyObject *d = data ? data : PyLong_FromLong(fd);
  if (!d)
    return NULL;
  if (data)
    Py_INCREF(d);
  int depth = poller_depth(self->p, fd);
  /* Make room in the dicts first, so recording the reference cannot fail
   * once libpoller holds the pointer. */
  PyObject *lst = NULL;
  if (push && depth > 0) {
    lst = fd_item(self->below, fd);
    if (lst) {
      Py_INCREF(lst);
    } else if (!(lst = PyList_New(0)) || fd_store(self->below, fd, lst) < 0) {
      Py_XDECREF(lst);
      Py_DECREF(d);
      return NULL;
    }
    PyObject *top = fd_item(self->tops, fd);
    if (!top || PyList_Append(lst, top) < 0) {
      if (!top)
        PyErr_SetString(PyExc_SystemError, "poller: registration lost");
      Py_DECREF(lst);
      Py_DECREF(d);
      return NULL;
    }
  }
  int r = push ? poller_push(self->p, fd, mask, d)
               : poller_add(self->p, fd, mask, d);
  if (r < 0) {
    if (lst) /* undo the append */
      (void)PyList_SetSlice(lst, PyList_GET_SIZE(lst) - 1, PyList_GET_SIZE(lst),
                            NULL);
    Py_XDECREF(lst);
    Py_DECREF(d);
    return raise_for(r);
  }
  Py_XDECREF(lst);
  if (fd_store(self->tops, fd, d) < 0) {
    /* Out of memory: the registration cannot be owned, so undo it. */
    if (push && depth > 0)
      poller_pop(self->p, fd);
    else
      poller_del(self->p, fd);
    Py_DECREF(d);
    return NULL;
  }
  Py_DECREF(d);
  Py_RETURN_NONE;
}

static PyObject *Poller_register(PollerObject *self, PyObject *args) {
  return add_or_push(self, args, 0);
}

static PyObject *Poller_push(PollerObject *self, PyObject *args) {
  return add_or_push(self, args, 1);
}

/* modify(fd, events, data=<unchanged>): the top of fd's stack.  A change of
 * interest on an fd closed since it was registered raises OSError(EBADF),
 * as select.epoll.modify does (libpoller applies changes lazily, so it
 * would only find out at the next wait). */
static PyObject *Poller_modify(PollerObject *self, PyObject *args) {
  PyObject *fdobj, *maskobj, *data = NULL;
  unsigned mask;
  if (!PyArg_ParseTuple(args, "OO|O", &fdobj, &maskobj, &data))
    return NULL;
  int fd = get_fd(fdobj);
  if (fd < 0 || check_mutable(self) < 0 || get_mask(maskobj, &mask) < 0)
    return NULL;
  poller_event key;
  int r = poller_get(self->p, fd, &key);
  if (r < 0)
    return raise_errno(r);
  if (mask != key.events && fcntl(fd, F_GETFD) < 0 && errno == EBADF)
    return raise_errno(-EBADF);
  PyObject *d = data ? data : (PyObject *)key.data;
  Py_INCREF(d);
  r = poller_mod(self->p, fd, mask, d);
  if (r < 0) {
    Py_DECREF(d);
    return raise_for(r);
  }
  r = fd_store(self->tops, fd, d);
  Py_DECREF(d);
  if (r < 0) {
    /* Out of memory: put the old data back, which tops still owns. */
    poller_mod(self->p, fd, mask, key.data);
    return NULL;
  }
  Py_RETURN_NONE;
}

/* unregister(fd): removes the whole registration stack, a registration
 * disarmed by a refused change (reported as NVAL) included. */
static PyObject *Poller_unregister(PollerObject *self, PyObject *fdobj) {
  int fd = get_fd(fdobj);
  if (fd < 0 || check_mutable(self) < 0)
    return NULL;
  int r = poller_del(self->p, fd);
  if (r < 0)
    return raise_errno(r);
  if (forget_fd(self, fd) < 0)
    return NULL;
  Py_RETURN_NONE;
}

/* pop(fd) -> depth left: pops fd's registration stack. */
static PyObject *Poller_pop(PollerObject *self, PyObject *fdobj) {
  int fd = get_fd(fdobj);
  if (fd < 0 || check_mutable(self) < 0)
    return NULL;
  int r = poller_pop(self->p, fd);
  if (r < 0)
    return raise_errno(r);
  int depth = poller_depth(self->p, fd);
  if (depth == 0) {
    if (forget_fd(self, fd) < 0)
      return NULL;
  } else {
    PyObject *lst = fd_item(self->below, fd);
    Py_ssize_t n = lst ? PyList_GET_SIZE(lst) : 0;
    if (n > 0) {
      PyObject *top = PyList_GET_ITEM(lst, n - 1);
      Py_INCREF(top);
      Py_INCREF(lst);
      int e = fd_store(self->tops, fd, top);
      if (e == 0)
        e = n == 1 ? fd_store(self->below, fd, NULL)
                   : PyList_SetSlice(lst, n - 1, n, NULL);
      Py_DECREF(lst);
      Py_DECREF(top);
      if (e < 0)
        return NULL;
    }
  }
  return PyLong_FromLong(poller_depth(self->p, fd));
}

static PyObject *Poller_get(PollerObject *self, PyObject *fdobj) {
  int fd = get_fd(fdobj);
  if (fd < 0 || check_mutable(self) < 0) /* the table is the waiter's */
    return NULL;
  poller_event key;
  int r = poller_get(self->p, fd, &key);
  if (r < 0)
    return raise_errno(r);
  return Py_BuildValue("(IO)", key.events,
                       key.data ? (PyObject *)key.data : Py_None);
}

static PyObject *Poller_depth(PollerObject *self, PyObject *fdobj) {
  int fd = get_fd(fdobj);
  if (fd < 0 || check_mutable(self) < 0)
    return NULL;
  return PyLong_FromLong(poller_depth(self->p, fd));
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Seconds to whole ms, rounded up so a wait is never shorter than asked
 * and never a zero-timeout spin (python/asyncio#106). */
static int ms_of(double s) {
  if (s <= 0)
    return 0;
  double m = ceil(s * 1e3);
  return m > INT32_MAX ? INT32_MAX : (int)m;
}

/* timeout in seconds: None or negative blocks (as select.epoll.poll),
 * 0 does not block.  Sets *ms and the absolute *deadline. */
static int timeout_of(PyObject *obj, double *deadline, int *ms, int clamp) {
  *deadline = -1;
  *ms = -1;
  if (obj == Py_None)
    return 0;
  if (!PyFloat_Check(obj) && !PyLong_Check(obj) && !PyIndex_Check(obj) &&
      !PyNumber_Check(obj)) {
    PyErr_Format(PyExc_TypeError,
                 "timeout must be a number or None, not %.100s",
                 Py_TYPE(obj)->tp_name);
    return -1;
  }
  double t = PyFloat_AsDouble(obj);
  if (t == -1 && PyErr_Occurred())
    return -1;
  if (isnan(t)) {
    PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
    return -1;
  }
  if (t < 0)
    return 0;
  /* select.epoll and select.poll refuse more than INT32_MAX ms (24.8
   * days); select.select takes anything up to the range of CPython's
   * _PyTime_t (int64 ns, about 292 years), so the select backend clamps
   * there: such a wait may end with nothing after 24.8 days. */
  if (t > (clamp ? (double)INT64_MAX / 1e9 : (double)INT32_MAX / 1e3)) {
    PyErr_SetString(PyExc_OverflowError, "timeout is too large");
    return -1;
  }
  *ms = ms_of(t);
  *deadline = now_s() + t;
  return 0;
}

/* Checks the timeout and the running guard and makes room for maxevents
 * (grown outside the wait).  Sets self->running on success. */
static int wait_begin(PollerObject *self, PyObject *timeout, int *maxevents,
                      int *ms, double *deadline) {
  if (check_open(self) < 0 ||
      timeout_of(timeout, deadline, ms, self->clamp) < 0)
    return -1;
  if (is_running(self)) {
    PyErr_SetString(PyExc_RuntimeError, "concurrent poll() invocation");
    return -1;
  }
  if (*maxevents <= 0) {
    size_t c = poller_count(self->p);
    *maxevents = c < 1 ? 1 : c > INT_MAX / 2 ? INT_MAX / 2 : (int)c;
  }
  if (*maxevents > self->nevents) {
    poller_event *ev =
        PyMem_Realloc(self->events, (size_t)*maxevents * sizeof *ev);
    if (!ev) {
      PyErr_NoMemory();
      return -1;
    }
    self->events = ev;
    self->nevents = *maxevents;
  }
  self->running = 1;
  self->owner = PyThread_get_thread_ident();
  self->running_pid = getpid();
  return 0;
}

/* The wait: GIL released, signals handled, PEP 475 retries.  Returns the
 * number of reports or -1 with an exception set (running cleared). */
static int do_wait(PollerObject *self, int maxevents, int ms, double deadline) {
  int n;
  for (;;) {
    Py_BEGIN_ALLOW_THREADS;
    n = poller_wait(self->p, self->events, maxevents, ms);
    Py_END_ALLOW_THREADS;
    if (n != -EINTR)
      break;
    /* The handlers run with no wait in progress, so they may change the
     * registrations; close() stays refused while running is set. */
    if (PyErr_CheckSignals() < 0) {
      self->running = 0;
      return -1;
    }
    if (ms > 0)
      ms = ms_of(deadline - now_s()); /* 0 makes one last, fresh poll */
  }
  if (n < 0) {
    self->running = 0;
    raise_errno(n);
    return -1;
  }
  return n;
}

/* poll(timeout=None, maxevents=-1) -> [(fd, events)] */
static PyObject *Poller_poll(PollerObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"timeout", "maxevents", NULL};
  PyObject *timeout = Py_None;
  int maxevents = -1, ms;
  double deadline;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|Oi", kwlist, &timeout,
                                   &maxevents))
    return NULL;
  if (maxevents <= 0)
    maxevents = self->nevents;
  if (wait_begin(self, timeout, &maxevents, &ms, &deadline) < 0)
    return NULL;
  int n = do_wait(self, maxevents, ms, deadline);
  if (n < 0)
    return NULL;
  PyObject *list = PyList_New(n);
  for (int i = 0; list && i < n; i++) {
    PyObject *t =
        Py_BuildValue("(iI)", self->events[i].fd, self->events[i].events);
    if (!t)
      Py_CLEAR(list);
    else
      PyList_SET_ITEM(list, i, t);
  }
  self->running = 0;
  return list;
}

/* The selector classes register EVENT_READ (1) as POLLER_IN and
 * EVENT_WRITE (2) as POLLER_OUT (libpoller's bits are poll(2)'s, where 2
 * is POLLPRI); this turns such an interest back into selectors' bits. */
static inline unsigned selector_interest(unsigned interest) {
  return ((interest & POLLER_IN) ? 1u : 0u) |
         ((interest & POLLER_OUT) ? 2u : 0u);
}

/* The selectors' view of a report: EVENT_READ (1) / EVENT_WRITE (2), with
 * ERR and HUP counting as both (as the standard library's EpollSelector
 * and PollSelector do). */
static inline unsigned selector_bits(unsigned bits) {
  unsigned ready = 0;
  if (bits & ~(unsigned)POLLER_IN)
    ready |= 2;
  if (bits & ~(unsigned)POLLER_OUT)
    ready |= 1;
  return ready;
}

/* select_keys(timeout=None, maxevents=-1) -> [(data, ready)], the selectors'
 * select() in C.  maxevents -1 makes room for every registered fd (as
 * EpollSelector does).  A report is kept only when it belongs to the
 * registration now in force (generation) and some of its selector bits are
 * in that registration's interest; the data is read from the table, not
 * the report, so a data-only modify() is always seen. */
static PyObject *select_keys(PollerObject *self, PyObject *timeout,
                             int maxevents) {
  int ms;
  double deadline;
  if (wait_begin(self, timeout, &maxevents, &ms, &deadline) < 0)
    return NULL;
  int n = do_wait(self, maxevents, ms, deadline);
  if (n < 0)
    return NULL;
  PyObject *list = PyList_New(n);
  Py_ssize_t k = 0;
  for (int i = 0; list && i < n; i++) {
    poller_event *ev = &self->events[i];
    poller_event key;
    PyObject *data;
    unsigned ready = selector_bits(ev->events);
    /* An NVAL report (a refused change: the registration stays, disarmed)
     * is a ready fd, as PollSelector reports POLLNVAL. */
    if (poller_get(self->p, ev->fd, &key) == 0 && key.gen == ev->gen) {
      ready &= selector_interest(key.events);
      data = (PyObject *)key.data;
    } else {
      continue;
    }
    if (!ready || !data)
      continue;
    /* The reference first: the allocation below may run the garbage
     * collector, whose finalizers may unregister the fd and release the
     * table's reference to data. */
    Py_INCREF(data);
    PyObject *t = PyTuple_New(2);
    if (!t) {
      Py_DECREF(data);
      Py_CLEAR(list);
      break;
    }
    PyTuple_SET_ITEM(t, 0, data);
    PyTuple_SET_ITEM(t, 1, PyLong_FromUnsignedLong(ready));
    PyList_SET_ITEM(list, k++, t);
  }
  /* Unused slots are NULL; a slice deletion drops them. */
  if (list && k < n && PyList_SetSlice(list, k, n, NULL) < 0)
    Py_CLEAR(list);
  self->running = 0;
  return list;
}

static PyObject *Poller_select_keys(PollerObject *self, PyObject *args,
                                    PyObject *kw) {
  static char *kwlist[] = {"timeout", "maxevents", NULL};
  PyObject *timeout = Py_None;
  int maxevents = -1;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|Oi", kwlist, &timeout,
                                   &maxevents))
    return NULL;
  return select_keys(self, timeout, maxevents);
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

/* flush(): applies the queued interest changes now (poller_flush).  A
 * registration whose change the kernel refuses stays, disarmed (reported
 * as NVAL at the next poll), and the first such error is raised. */
static PyObject *Poller_flush(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  if (check_mutable(self) < 0)
    return NULL;
  int r = poller_flush(self->p);
  if (r < 0)
    return raise_errno(r);
  Py_RETURN_NONE;
}

/* reinit(): rebuilds the kernel object in a forked child (poller_reinit);
 * the registrations and their data stay. */
static PyObject *Poller_reinit(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  if (check_mutable(self) < 0)
    return NULL;
  int r = poller_reinit(self->p);
  if (r < 0)
    return raise_errno(r);
  Py_RETURN_NONE;
}

static PyObject *Poller_close(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  if (is_running(self)) {
    PyErr_SetString(PyExc_RuntimeError, "close() during poll()");
    return NULL;
  }
  if (self->p)
    close_poller(self);
  Py_RETURN_NONE;
}

static PyObject *Poller_enter(PollerObject *self, PyObject *noargs) {
  (void)noargs;
  if (check_open(self) < 0)
    return NULL;
  Py_INCREF(self);
  return (PyObject *)self;
}

static PyObject *Poller_exit(PollerObject *self, PyObject *args) {
  (void)args;
  return Poller_close(self, NULL);
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

static PyObject *Poller_count(PollerObject *self, PyObject *noargs) {
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
                       st.syscalls, "events", st.events, "changes", st.changes,
                       "eintr", st.eintr, "stale", st.stale);
}

static PyMethodDef Poller_methods[] = {
    {"register", (PyCFunction)Poller_register, METH_VARARGS,
     "register(fd, events, data=None): add a registration (poller_add)"},
    {"modify", (PyCFunction)Poller_modify, METH_VARARGS,
     "modify(fd, events, data=<unchanged>): change the top registration"},
    {"unregister", (PyCFunction)Poller_unregister, METH_O,
     "unregister(fd): remove fd with its whole stack (poller_del)"},
    {"push", (PyCFunction)Poller_push, METH_VARARGS,
     "push(fd, events, data=None): push onto fd's registration stack"},
    {"pop", (PyCFunction)Poller_pop, METH_O,
     "pop(fd) -> depth left: pop fd's registration stack"},
    {"get", (PyCFunction)Poller_get, METH_O,
     "get(fd) -> (events, data) of the registration in force"},
    {"depth", (PyCFunction)Poller_depth, METH_O,
     "depth(fd) -> depth of fd's registration stack (0: not registered)"},
    {"poll", (PyCFunction)(void (*)(void))Poller_poll,
     METH_VARARGS | METH_KEYWORDS,
     "poll(timeout=None, maxevents=-1) -> [(fd, events)]; timeout in\n"
     "seconds, None or negative blocks"},
    {"wait", (PyCFunction)(void (*)(void))Poller_poll,
     METH_VARARGS | METH_KEYWORDS, "wait(timeout=None, maxevents=-1): poll"},
    {"select_keys", (PyCFunction)(void (*)(void))Poller_select_keys,
     METH_VARARGS | METH_KEYWORDS,
     "select_keys(timeout=None, maxevents=-1) -> [(data, ready)] with ready\n"
     "in selectors' EVENT_READ/EVENT_WRITE bits"},
    {"wakeup", (PyCFunction)Poller_wakeup, METH_NOARGS,
     "wakeup(): make a poll in progress (or the next one) return"},
    {"fileno", (PyCFunction)Poller_fileno, METH_NOARGS,
     "fileno() -> the kernel object's fd (epoll, io_uring, kqueue), or -1"},
    {"fd", (PyCFunction)Poller_fileno, METH_NOARGS, "fd(): fileno()"},
    {"flush", (PyCFunction)Poller_flush, METH_NOARGS,
     "flush(): apply the queued interest changes now"},
    {"reinit", (PyCFunction)Poller_reinit, METH_NOARGS,
     "reinit(): rebuild the kernel object in a forked child"},
    {"close", (PyCFunction)Poller_close, METH_NOARGS,
     "close(): release the poller; the fds stay open"},
    {"count", (PyCFunction)Poller_count, METH_NOARGS,
     "count() -> registered fds"},
    {"stats", (PyCFunction)Poller_stats, METH_NOARGS,
     "stats() -> the poller's counters (waits, syscalls, events, ...)"},
    {"__enter__", (PyCFunction)Poller_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Poller_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Poller_getset[] = {
    {"closed", (getter)Poller_get_closed, NULL, "True once closed", NULL},
    {"backend", (getter)Poller_get_backend, NULL, "the backend's name", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject PollerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "poller._poller.Poller",
    .tp_basicsize = sizeof(PollerObject),
    .tp_dealloc = (destructor)Poller_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Poller(backend='auto', sizehint=1024): a libpoller instance.\n"
              "backend is a name (auto, select, poll, epoll, kqueue, uring)",
    .tp_traverse = (traverseproc)Poller_traverse,
    .tp_clear = (inquiry)Poller_clear,
    .tp_methods = Poller_methods,
    .tp_getset = Poller_getset,
    .tp_init = (initproc)Poller_init,
    .tp_new = PyType_GenericNew,
};

/* SelectMixin: the select() method of the selector classes, in C, so a
 * select() call costs no Python frame (about 0.15 us, 8% of a select()
 * with one ready fd).  It waits on self._selector (a Poller) with the
 * selectors' timeout rule: None blocks, <= 0 does not block. */
static PyObject *str_selector; /* "_selector", interned */
static PyObject *int_zero;     /* 0 */

static PyObject *SelectMixin_select(PyObject *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames) {
  PyObject *timeout = Py_None;
  Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  if (nargs + nkw > 1) {
    PyErr_SetString(PyExc_TypeError, "select() takes at most 1 argument");
    return NULL;
  }
  if (nargs == 1) {
    timeout = args[0];
  } else if (nkw == 1) {
    PyObject *name = PyTuple_GET_ITEM(kwnames, 0);
    if (!PyUnicode_Check(name) ||
        PyUnicode_CompareWithASCIIString(name, "timeout") != 0) {
      PyErr_Format(PyExc_TypeError,
                   "select() got an unexpected keyword argument %R", name);
      return NULL;
    }
    timeout = args[0];
  }
  PyObject *sel = PyObject_GetAttr(self, str_selector);
  if (!sel)
    return NULL;
  if (!PyObject_TypeCheck(sel, &PollerType)) {
    PyErr_SetString(PyExc_TypeError, "_selector is not a poller Poller");
    Py_DECREF(sel);
    return NULL;
  }
  if (timeout != Py_None) {
    /* A negative timeout blocks in Poller.poll (select.epoll's rule) but
     * means "do not block" to selectors, which compare it with 0 first
     * (so a str timeout raises TypeError there, as here). */
    int le = PyObject_RichCompareBool(timeout, int_zero, Py_LE);
    if (le < 0) {
      Py_DECREF(sel);
      return NULL;
    }
    if (le)
      timeout = int_zero;
  }
  PyObject *r = select_keys((PollerObject *)sel, timeout, -1);
  Py_DECREF(sel);
  return r;
}

static PyMethodDef SelectMixin_methods[] = {
    {"select", (PyCFunction)(void (*)(void))SelectMixin_select,
     METH_FASTCALL | METH_KEYWORDS,
     "select(timeout=None) -> [(key, events)]: wait for a registered file\n"
     "object to be ready, or the timeout (seconds) to expire"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject SelectMixinType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "poller._poller.SelectMixin",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "select() in C for the selector classes",
    .tp_methods = SelectMixin_methods,
    .tp_new = PyType_GenericNew,
};

static PyObject *mod_available(PyObject *m, PyObject *noargs) {
  (void)m;
  (void)noargs;
  PyObject *list = PyList_New(0);
  unsigned bits = poller_available();
  for (int b = 1; list && b <= POLLER_URING; b++)
    if (bits & (1u << b)) {
      PyObject *s = PyUnicode_FromString(poller_backend_name(b));
      if (!s || PyList_Append(list, s) < 0)
        Py_CLEAR(list);
      Py_XDECREF(s);
    }
  return list;
}

static PyMethodDef module_methods[] = {
    {"available", mod_available, METH_NOARGS,
     "available() -> names of the backends usable here"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT,
                                       "_poller",
                                       "libpoller bindings",
                                       -1,
                                       module_methods,
                                       NULL,
                                       NULL,
                                       NULL,
                                       NULL};

PyMODINIT_FUNC PyInit__poller(void) {
  if (PyType_Ready(&PollerType) < 0 || PyType_Ready(&SelectMixinType) < 0)
    return NULL;
  str_selector = PyUnicode_InternFromString("_selector");
  int_zero = PyLong_FromLong(0);
  if (!str_selector || !int_zero)
    return NULL;
  PyObject *m = PyModule_Create(&moduledef);
  if (!m)
    return NULL;
  Py_INCREF(&PollerType);
  if (PyModule_AddObject(m, "Poller", (PyObject *)&PollerType) < 0) {
    Py_DECREF(&PollerType);
    Py_DECREF(m);
    return NULL;
  }
  Py_INCREF(&SelectMixinType);
  if (PyModule_AddObject(m, "SelectMixin", (PyObject *)&SelectMixinType) < 0) {
    Py_DECREF(&SelectMixinType);
    Py_DECREF(m);
    return NULL;
  }
  if (PyModule_AddStringConstant(m, "__version__", poller_version_string()) <
          0 ||
      PyModule_AddIntConstant(m, "IN", POLLER_IN) < 0 ||
      PyModule_AddIntConstant(m, "OUT", POLLER_OUT) < 0 ||
      PyModule_AddIntConstant(m, "PRI", POLLER_PRI) < 0 ||
      PyModule_AddIntConstant(m, "ERR", POLLER_ERR) < 0 ||
      PyModule_AddIntConstant(m, "HUP", POLLER_HUP) < 0 ||
      PyModule_AddIntConstant(m, "RDHUP", POLLER_RDHUP) < 0 ||
      PyModule_AddIntConstant(m, "NVAL", POLLER_NVAL) < 0 ||
      PyModule_AddIntConstant(m, "ET", POLLER_ET) < 0 ||
      PyModule_AddIntConstant(m, "ONESHOT", POLLER_ONESHOT) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
