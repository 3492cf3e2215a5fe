"""Scheduler: continuous batching of many requests over one model.

The library's own worker thread (LLMS_SCHEDULER_OWN_THREAD) runs the batched
steps; events are taken with llms_scheduler_poll by one Python dispatcher
thread and routed to per-request buffers. No event callback is installed, so
no Python code ever runs on a library thread.

Requests are routed by user_tag, which the bindings assign before submitting,
so an event that arrives before llms_scheduler_submit has returned still
finds its request.
"""

import codecs
import ctypes
import itertools
import threading
from ctypes import byref, c_size_t, c_uint64

from . import _lib
from ._api import FINISH_NAMES, _Handle, _check, _raise, _sampling_params
from .errors import LlmsError, Status, error_class

SCHEDULER_OWN_THREAD = 1 << 0
SCHEDULER_DETERMINISTIC = 1 << 1
REQUEST_ADD_BOS = 1 << 0
REQUEST_PARSE_SPECIAL = 1 << 1
REQUEST_MODEL_DEFAULTS = 1 << 2

EVENT_TOKEN, EVENT_FINISHED, EVENT_ERROR = 1, 2, 3

FINISH_REASONS = dict(FINISH_NAMES)
FINISH_REASONS[8] = "rejected"

# How long one poll waits, so that close() is noticed promptly.
_POLL_MS = 50
_DONE = object()


class Result:
    """The outcome of a request: text, finish_reason ("eog", "stop",
    "length", "context_full", "cancelled", "timeout", "rejected"), status
    (0, or the negative status that ended it), and usage."""

    __slots__ = ("text", "finish_reason", "status", "prompt_tokens", "cached_tokens",
                 "completion_tokens")

    @property
    def usage(self):
        return {"prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
                "completion_tokens": self.completion_tokens}

    def __repr__(self):
        return "Result(text=%r, finish_reason=%r, usage=%r)" % (self.text, self.finish_reason,
                                                               self.usage)


class Request:
    """One submitted request. Iterate it (or call stream()) for the text
    pieces as they are generated; result() waits for the end. Several
    consumers may each read the whole stream. Thread-safe."""

    def __init__(self, scheduler, tag):
        self._sched = scheduler
        self._tag = tag
        self.id = 0
        self._pieces = []
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._cond = threading.Condition()
        self._result = None
        self._error = None
        self._waiters = []  # (loop, asyncio.Event) of astream() consumers

    # -- fed by the dispatcher ---------------------------------------------
    def _text(self, raw, final=False):
        piece = self._decoder.decode(raw, final) if raw or final else ""
        if piece:
            self._pieces.append(piece)

    def _wake(self):
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, ev in waiters:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass  # that event loop is closed

    def _token(self, raw):
        with self._cond:
            self._text(raw)
            self._wake()

    def _finish(self, ev_type, raw, finish_reason, status, usage):
        with self._cond:
            if self._result is not None:
                return
            self._text(raw, final=True)
            r = Result()
            r.text = "".join(self._pieces)
            r.finish_reason = FINISH_REASONS.get(finish_reason, finish_reason)
            r.status = status
            r.prompt_tokens, r.cached_tokens, r.completion_tokens = usage
            self._result = r
            if ev_type == EVENT_ERROR:
                name = _lib.llms_status_string(status)
                self._error = error_class(status)(status, "request failed",
                                                  name.decode() if name else "")
            self._wake()

    # -- consumers ---------------------------------------------------------
    @property
    def done(self):
        return self._result is not None

    def stream(self, timeout=None):
        """Iterator of text pieces (str, never a partial UTF-8 character).
        Raises the request's error, if it failed, after its last piece."""
        i = 0
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: i < len(self._pieces) or self._result is not None,
                                           timeout):
                    raise TimeoutError("no event within %s s" % timeout)
                new = self._pieces[i:]
                ended = self._result is not None and i + len(new) == len(self._pieces)
            for p in new:
                yield p
            i += len(new)
            if ended:
                if self._error is not None:
                    raise self._error
                return

    __iter__ = stream

    def result(self, timeout=None):
        """Wait for the end; the Result. Raises the LlmsError of a failed
        request, TimeoutError if `timeout` seconds pass first."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._result is not None, timeout):
                raise TimeoutError("request %d not finished within %s s" % (self.id, timeout))
            if self._error is not None:
                raise self._error
            return self._result

    def text(self, timeout=None):
        return self.result(timeout).text

    async def astream(self):
        """Async iterator of text pieces, for use inside an asyncio loop:
        `async for piece in request.astream()`. Never blocks the loop."""
        import asyncio
        loop = asyncio.get_running_loop()
        i = 0
        while True:
            ev = asyncio.Event()
            with self._cond:
                new = self._pieces[i:]
                ended = self._result is not None and i + len(new) == len(self._pieces)
                if not new and not ended:
                    self._waiters.append((loop, ev))
            for p in new:
                yield p
            i += len(new)
            if ended:
                if self._error is not None:
                    raise self._error
                return
            if not new:
                await ev.wait()

    async def aresult(self):
        """The Result, awaited without blocking the event loop."""
        async for _ in self.astream():
            pass
        return self.result()

    def cancel(self):
        """Ask for the request to end; its result then has finish_reason
        "cancelled" (unless it ended first). Returns False if it had
        already ended."""
        if self._result is not None or not self.id:
            return False
        st = _lib.llms_scheduler_cancel(self._sched.handle, self.id)
        if st == Status.ERR_NOT_FOUND:
            return False
        _check(st)
        return True

    def __repr__(self):
        return "Request(id=%d, done=%r)" % (self.id, self.done)


class _Dispatcher:
    """State shared with the dispatcher thread (not the Scheduler itself,
    so that an unreferenced Scheduler can still be collected and closed)."""

    def __init__(self, handle):
        self.handle = handle
        self.lock = threading.Lock()
        self.requests = {}  # user_tag -> Request
        self.stop = threading.Event()
        self.error = None

    def run(self):
        cap = 256
        buf = ctypes.create_string_buffer(cap)
        ev = _lib.llms_event()
        while not self.stop.is_set():
            ev.struct_size = ctypes.sizeof(ev)
            ev.text_buf = ctypes.addressof(buf)
            ev.text_cap = cap
            st = _lib.llms_scheduler_poll(self.handle, byref(ev), _POLL_MS)
            if st == Status.AGAIN:
                continue
            if st == Status.ERR_BUFFER_TOO_SMALL:
                cap = max(cap * 2, ev.text_len + 1)
                buf = ctypes.create_string_buffer(cap)
                continue
            if st < 0:
                self.error = st
                self.fail_all(st)
                return
            raw = ctypes.string_at(buf, ev.text_len) if ev.text_len else b""
            with self.lock:
                req = self.requests.get(ev.user_tag)
                if req is not None and ev.type != EVENT_TOKEN:
                    del self.requests[ev.user_tag]
            if req is None:
                continue
            if ev.type == EVENT_TOKEN:
                req._token(raw)
            else:
                req._finish(ev.type, raw, ev.finish_reason, ev.status,
                            (ev.prompt_tokens, ev.cached_tokens, ev.completion_tokens))

    def fail_all(self, status, finish_reason=5):
        with self.lock:
            reqs, self.requests = list(self.requests.values()), {}
        ev_type = EVENT_ERROR if status not in (0, Status.ERR_CANCELLED) else EVENT_FINISHED
        for r in reqs:
            r._finish(ev_type, b"", finish_reason, status, (0, 0, 0))


class Scheduler(_Handle):
    """Continuous batching over one Model.

        with llmserve.Scheduler(model, max_batch_tokens=256) as sched:
            req = sched.submit("The robot", max_tokens=32, temperature=0)
            for piece in req:
                print(piece, end="")
            print(req.result().finish_reason)

    submit() may be called from any number of threads. Arguments left as
    None keep the library's defaults. deterministic=True makes a request's
    greedy output independent of the batch it runs in.

    Every method is thread-safe except close(), which must not run while
    another thread is inside a call on this scheduler (as in C)."""

    _destroy = staticmethod(_lib.llms_scheduler_destroy)

    def __init__(self, model, max_batch_tokens=None, max_running=None, queue_capacity=None,
                 n_ctx=None, kv_budget_bytes=None, aging_ms=None, deterministic=False):
        super().__init__()
        self.model = model
        p = _lib.llms_scheduler_params()
        _lib.llms_scheduler_params_init(byref(p))
        for name, v in (("max_batch_tokens", max_batch_tokens), ("max_running", max_running),
                        ("queue_capacity", queue_capacity), ("n_ctx", n_ctx),
                        ("kv_budget_bytes", kv_budget_bytes), ("aging_ms", aging_ms)):
            if v is not None:
                setattr(p, name, v)
        p.flags |= SCHEDULER_OWN_THREAD | (SCHEDULER_DETERMINISTIC if deterministic else 0)
        h = ctypes.c_void_p()
        _check(_lib.llms_scheduler_create(model.handle, byref(p), byref(h)))
        self._h = h.value
        self._tags = itertools.count(1)
        self._core = _Dispatcher(self._h)
        self._thread = threading.Thread(target=self._core.run, name="llmserve-dispatch",
                                        daemon=True)
        self._thread.start()
        model._children.add(self)

    def close(self):
        """Stop the dispatcher, destroy the scheduler (dropping the requests
        still running: their results end as "cancelled"). Idempotent."""
        with self._close_lock:
            h, self._h = self._h, None
            if not h:
                return
            self._core.stop.set()
            if self._thread is not threading.current_thread():
                self._thread.join()
            _lib.llms_scheduler_destroy(h)
            self._core.fail_all(Status.ERR_CANCELLED, finish_reason=6)

    def submit(self, prompt, max_tokens=None, temperature=None, tenant=None, priority=0,
               deadline_ms=0, stop=None, *, tokens=None, add_bos=None, parse_special=False,
               top_k=None, top_p=None, min_p=None, repeat_penalty=None, frequency_penalty=None,
               presence_penalty=None, penalty_last_n=None, seed=None, min_tokens=None,
               logit_bias=None, ignore_eog=False):
        """Queue a request; returns its Request at once. `prompt` is text
        (BOS as the model's metadata says unless add_bos is given), `tokens`
        optional ids after it. Raises LlmsBusyError when the queue is full,
        LlmsRateLimitedError when the tenant's token budget is spent,
        LlmsPromptTooLongError, LlmsNotFoundError for an unknown tenant."""
        sp, keep = _sampling_params(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                                    frequency_penalty, presence_penalty, penalty_last_n, seed,
                                    min_tokens, stop, logit_bias, None, ignore_eog)
        r = _lib.llms_request_params()
        _lib.llms_request_params_init(byref(r))
        if add_bos is None:
            r.flags = REQUEST_MODEL_DEFAULTS
        else:
            r.flags = REQUEST_ADD_BOS if add_bos else 0
        if parse_special:
            r.flags |= REQUEST_PARSE_SPECIAL
        data = b""
        if prompt is not None:
            data = prompt.encode() if isinstance(prompt, str) else bytes(prompt)
            r.prompt, r.prompt_len = data, len(data)
        if tokens:
            tokens = list(tokens)
            arr = (ctypes.c_int32 * len(tokens))(*tokens)
            keep.append(arr)
            r.tokens, r.n_tokens = arr, len(tokens)
        r.sampling = ctypes.pointer(sp)
        tname = tenant.encode() if tenant is not None else None
        r.tenant = tname
        r.priority = priority
        r.deadline_ms = deadline_ms
        tag = next(self._tags)
        r.user_tag = tag
        req = Request(self, tag)
        core = self._core
        with core.lock:
            core.requests[tag] = req
        rid = c_uint64()
        st = _lib.llms_scheduler_submit(self.handle, byref(r), byref(rid))
        if st < 0:
            with core.lock:
                core.requests.pop(tag, None)
            _raise(st)
        req.id = rid.value
        return req

    def generate(self, prompt, **kw):
        """submit() and wait: the whole completion text."""
        return self.submit(prompt, **kw).result().text

    def set_tenant(self, name, max_concurrent=0, tokens_per_minute=0, max_prompt_tokens=0,
                   max_output_tokens=0, weight=None, sharing_group=None):
        """Register or update a tenant ("" is the default tenant); 0 means
        no limit."""
        p = _lib.llms_tenant_params()
        _lib.llms_tenant_params_init(byref(p))
        bname = name.encode()
        p.name = bname
        p.max_concurrent = max_concurrent
        p.tokens_per_minute = tokens_per_minute
        p.max_prompt_tokens = max_prompt_tokens
        p.max_output_tokens = max_output_tokens
        if weight is not None:
            p.weight = weight
        group = sharing_group.encode() if sharing_group is not None else None
        p.sharing_group = group
        _check(_lib.llms_scheduler_set_tenant(self.handle, byref(p)))

    def stats(self):
        """A snapshot of llms_scheduler_stats as a dict."""
        s = _lib.llms_scheduler_stats()
        _lib.llms_scheduler_stats_init(byref(s))
        _check(_lib.llms_scheduler_get_stats(self.handle, byref(s)))
        return {name: getattr(s, name) for name, _ in s._fields_ if name != "struct_size"}

    def metrics_prometheus(self):
        """All metrics in the Prometheus text exposition format."""
        h = self.handle
        n = c_size_t(0)
        cap = 16384
        # The metrics may grow between the sizing call and the next one.
        for _ in range(4):
            buf = ctypes.create_string_buffer(cap)
            st = _lib.llms_scheduler_metrics_prometheus(h, buf, cap, byref(n))
            if st == Status.ERR_BUFFER_TOO_SMALL:
                cap = n.value + 4096
                continue
            _check(st)
            return buf.raw[:n.value].decode("utf-8", "replace")
        _raise(Status.ERR_BUFFER_TOO_SMALL)


__all__ = ["Scheduler", "Request", "Result", "LlmsError"]
