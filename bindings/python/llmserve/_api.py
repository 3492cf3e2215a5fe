"""The Pythonic layer: Context, Model, Session.

Ownership mirrors the C lifetimes (a context outlives its models, a model its
sessions): each child keeps a reference to its parent so garbage collection
can never free a parent first, and closing a parent closes its live children
first, because the C destructors require that order.

ctypes releases the GIL during every foreign call, so sessions on different
threads compute concurrently. The per-thread llms_errmsg() is read right
after the failing call on the same Python thread, hence the same OS thread.
"""

import ctypes
import threading
import weakref
from ctypes import byref, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_uint64, c_void_p

from . import _lib
from .errors import Status, error_class

BACKEND_AUTO, BACKEND_CPU, BACKEND_VULKAN = 0, 1, 2
LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 1, 2, 3, 4

TOKENIZE_ADD_BOS = 1 << 0
TOKENIZE_PARSE_SPECIAL = 1 << 1
TOKENIZE_MODEL_DEFAULTS = 1 << 2
DETOKENIZE_SPECIAL = 1 << 0
DETOKENIZE_KEEP_LEADING_SPACE = 1 << 1

SPECIAL_BOS, SPECIAL_EOS, SPECIAL_EOT, SPECIAL_PAD, SPECIAL_UNK, SPECIAL_SEP, SPECIAL_NL = range(7)

FINISH_NAMES = {0: "none", 1: "eog", 2: "stop", 3: "length", 4: "context_full", 5: "error",
                6: "cancelled", 7: "timeout"}

_META_INTS = {0, 1, 2, 3, 4, 5, 10, 11}
_META_FLOATS = {6, 12}
_META_BOOL, _META_STRING, _META_ARRAY = 7, 8, 9


def _msg(session=None):
    if session:
        m = _lib.llms_session_errmsg(session)
        if m:
            return m.decode("utf-8", "replace")
    m = _lib.llms_errmsg()
    return m.decode("utf-8", "replace") if m else ""


def _raise(st, session=None):
    name = _lib.llms_status_string(st)
    name = name.decode() if name else ""
    raise error_class(st)(st, _msg(session), name)


def _check(st, session=None):
    if st < 0:
        _raise(st, session)
    return st


def _grow(call):
    """Calls call(buf, cap, len_ptr) with a buffer large enough for the
    result, retrying once on BUFFER_TOO_SMALL; returns the bytes."""
    n = c_size_t(0)
    cap = 256
    for _ in range(2):
        buf = ctypes.create_string_buffer(cap)
        st = call(buf, cap, byref(n))
        if st == Status.ERR_BUFFER_TOO_SMALL:
            cap = n.value + 1
            continue
        _check(st)
        return buf.raw[:n.value]
    _raise(Status.ERR_BUFFER_TOO_SMALL)


def version():
    """The library's version string ("0.2.0")."""
    return _lib.llms_version_string().decode()


def build_features():
    return _lib.llms_build_features().decode().split()


def status_string(status):
    return _lib.llms_status_string(int(status)).decode()


class _Handle:
    """A C handle with an idempotent close() and a context manager."""

    _destroy = None

    def __init__(self):
        self._h = None
        self._children = weakref.WeakSet()
        # Re-entrant: closing a context closes its model, which closes the
        # context it owns.
        self._close_lock = threading.RLock()

    @property
    def handle(self):
        if not self._h:
            raise ValueError("%s is closed" % type(self).__name__)
        return self._h

    @property
    def closed(self):
        return not self._h

    def close(self):
        with self._close_lock:
            # Cleared first so that a re-entrant close (a child closing the
            # context it owns) returns at once.
            h, self._h = self._h, None
            if not h:
                return
            for child in list(self._children):
                child.close()
            type(self)._destroy(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # At interpreter exit the module globals may already be gone.
        try:
            self.close()
        except Exception:
            pass


class Context(_Handle):
    """Runtime: backend, worker threads, logging.

    log: a callable(level, message) receiving the library's diagnostics
    (called from library threads)."""

    _destroy = staticmethod(_lib.llms_context_destroy)

    def __init__(self, backend=BACKEND_AUTO, n_threads=0, device_index=-1, log=None,
                 log_level=LOG_WARN, log_content=False, device_memory_budget=0):
        super().__init__()
        p = _lib.llms_context_params()
        _lib.llms_context_params_init(byref(p))
        p.backend = backend
        p.n_threads = n_threads
        p.device_index = device_index
        p.log_level = log_level
        p.flags = 1 if log_content else 0
        p.device_memory_budget = device_memory_budget
        if log is not None:
            def trampoline(user, level, message, _log=log):
                try:
                    _log(level, message.decode("utf-8", "replace"))
                except Exception:
                    pass  # an exception cannot cross into C
            # Kept on the object: the C side holds the pointer until destroy.
            self._log_cb = _lib.LOG_FN(trampoline)
            p.log_fn = self._log_cb
        h = c_void_p()
        _check(_lib.llms_context_create(byref(p), byref(h)))
        self._h = h.value

    @property
    def backend(self):
        return _lib.llms_context_backend(self.handle)

    @property
    def n_threads(self):
        return _lib.llms_context_n_threads(self.handle)

    def load_model(self, path, **kw):
        return Model(path, context=self, **kw)


class ModelInfo:
    """A snapshot of llms_model_info as plain attributes."""

    def __init__(self, s):
        for name, _ in _lib.llms_model_info._fields_:
            v = getattr(s, name)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            if name != "struct_size":
                setattr(self, name, v)

    def __repr__(self):
        return "ModelInfo(%s)" % ", ".join("%s=%r" % kv for kv in vars(self).items())


class Model(_Handle):
    """A loaded GGUF model, immutable and shareable between threads.

    Without `context`, the model creates and owns a default one."""

    _destroy = staticmethod(_lib.llms_model_destroy)

    def __init__(self, path, context=None, vocab_only=False, no_mmap=False, n_threads=0):
        super().__init__()
        self._own_ctx = context is None
        self.context = context if context is not None else Context(n_threads=n_threads)
        p = _lib.llms_model_params()
        _lib.llms_model_params_init(byref(p))
        p.flags = (1 if no_mmap else 0) | (2 if vocab_only else 0)
        h = c_void_p()
        st = _lib.llms_model_load(self.context.handle, str(path).encode(), byref(p), byref(h))
        if st < 0:
            if self._own_ctx:
                self.context.close()
            _raise(st)
        self._h = h.value
        self.context._children.add(self)

    def close(self):
        super().close()
        if self._own_ctx:
            self.context.close()

    # -- information ------------------------------------------------------
    @property
    def backend(self):
        """Where this model's passes run (BACKEND_CPU or BACKEND_VULKAN)."""
        return _lib.llms_model_backend(self.handle)

    def info(self):
        s = _lib.llms_model_info()
        _lib.llms_model_info_init(byref(s))
        _check(_lib.llms_model_get_info(self.handle, byref(s)))
        return ModelInfo(s)

    @property
    def n_vocab(self):
        return _lib.llms_model_n_vocab(self.handle)

    def special_token(self, which):
        """Id of a special token (SPECIAL_*), or None if the model has none."""
        t = _lib.llms_model_special_token(self.handle, which)
        return None if t < 0 else t

    @property
    def bos(self):
        return self.special_token(SPECIAL_BOS)

    @property
    def eos(self):
        return self.special_token(SPECIAL_EOS)

    def is_eog(self, token):
        return bool(_lib.llms_model_token_is_eog(self.handle, token))

    def tensors(self):
        """A list of (name, type_name, dims, n_bytes) for every tensor."""
        out = []
        for i in range(self.info().n_tensors):
            t = _lib.llms_tensor_info()
            _lib.llms_tensor_info_init(byref(t))
            _check(_lib.llms_model_tensor(self.handle, i, byref(t)))
            tn = _lib.llms_type_name(t.type)
            out.append((t.name.decode(), tn.decode() if tn else str(t.type),
                        tuple(t.dims[:t.n_dims]), t.n_bytes))
        return out

    # -- metadata ---------------------------------------------------------
    def meta_keys(self):
        keys = []
        for i in range(self.info().n_metadata):
            k = c_char_p()
            _check(_lib.llms_model_meta_key(self.handle, i, byref(k)))
            keys.append(k.value.decode("utf-8", "replace"))
        return keys

    def meta_type(self, key):
        """(type, elem_type, n_elems) of the value under key (LLMS_META_* numbers)."""
        t, et, n = c_int32(), c_int32(), c_uint64()
        _check(_lib.llms_model_meta_type(self.handle, key.encode(), byref(t), byref(et), byref(n)))
        return t.value, et.value, n.value

    def meta_int(self, key):
        v = c_int64()
        _check(_lib.llms_model_meta_int(self.handle, key.encode(), byref(v)))
        return v.value

    def meta_float(self, key):
        v = c_double()
        _check(_lib.llms_model_meta_float(self.handle, key.encode(), byref(v)))
        return v.value

    def meta_string(self, key):
        p, n = c_void_p(), c_size_t()
        _check(_lib.llms_model_meta_string(self.handle, key.encode(), byref(p), byref(n)))
        return ctypes.string_at(p.value, n.value).decode("utf-8", "replace")

    def meta_format(self, key, max_elems=8):
        k = key.encode()
        raw = _grow(lambda b, c, n: _lib.llms_model_meta_format(self.handle, k, max_elems, b, c, n))
        return raw.decode("utf-8", "replace")

    def metadata(self, key):
        """A metadata value as the closest Python type (arrays as their text form)."""
        t, _, _ = self.meta_type(key)
        if t in _META_INTS:
            return self.meta_int(key)
        if t in _META_FLOATS:
            return self.meta_float(key)
        if t == _META_BOOL:
            return bool(self.meta_int(key))
        if t == _META_STRING:
            return self.meta_string(key)
        return self.meta_format(key)

    # -- text -------------------------------------------------------------
    def tokenize(self, text, add_bos=False, parse_special=False, model_defaults=False):
        data = text.encode() if isinstance(text, str) else bytes(text)
        flags = ((TOKENIZE_ADD_BOS if add_bos else 0) | (TOKENIZE_PARSE_SPECIAL if parse_special else 0)
                 | (TOKENIZE_MODEL_DEFAULTS if model_defaults else 0))
        n = c_size_t()
        cap = len(data) + 4
        for _ in range(2):
            buf = (c_int32 * cap)()
            st = _lib.llms_tokenize(self.handle, data, len(data), flags, buf, cap, byref(n))
            if st == Status.ERR_BUFFER_TOO_SMALL:
                cap = n.value
                continue
            _check(st)
            return list(buf[:n.value])
        _raise(Status.ERR_BUFFER_TOO_SMALL)

    def token_to_piece(self, token):
        """The bytes of one token (may be part of a UTF-8 character)."""
        return _grow(lambda b, c, n: _lib.llms_token_to_piece(self.handle, token, b, c, n))

    def detokenize(self, tokens, special=False, keep_leading_space=False):
        arr = (c_int32 * len(tokens))(*tokens)
        flags = (DETOKENIZE_SPECIAL if special else 0) | (
            DETOKENIZE_KEEP_LEADING_SPACE if keep_leading_space else 0)
        raw = _grow(lambda b, c, n: _lib.llms_detokenize(self.handle, arr, len(tokens), flags, b, c, n))
        return raw.decode("utf-8", "replace")

    @property
    def chat_template(self):
        t = _lib.llms_model_chat_template(self.handle)
        return t.decode("utf-8", "replace") if t is not None else None

    def apply_chat_template(self, messages, add_assistant=True, template=None):
        """Render [{"role": ..., "content": ...}, ...] (or (role, content)
        pairs) with the model's template, or `template` (text or family name)."""
        pairs = [(m["role"], m["content"]) if isinstance(m, dict) else tuple(m) for m in messages]
        keep = [(r.encode(), c.encode()) for r, c in pairs]
        arr = (_lib.llms_chat_message * max(1, len(keep)))()
        for i, (r, c) in enumerate(keep):
            arr[i].role, arr[i].content = r, c
        tmpl = template.encode() if template is not None else None
        raw = _grow(lambda b, c, n: _lib.llms_chat_apply_template(
            self.handle, tmpl, arr, len(keep), 1 if add_assistant else 0, b, c, n))
        return raw.decode("utf-8", "replace")

    # -- sessions ---------------------------------------------------------
    def session(self, n_ctx=0, context_shift=False, n_keep=0):
        return Session(self, n_ctx=n_ctx, context_shift=context_shift, n_keep=n_keep)


def _sampling_params(max_tokens=None, temperature=None, top_k=None, top_p=None, min_p=None,
                     repeat_penalty=None, frequency_penalty=None, presence_penalty=None,
                     penalty_last_n=None, seed=None, min_tokens=None, stop=None,
                     logit_bias=None, n_logprobs=None, ignore_eog=False):
    """An llms_sampling_params and the ctypes arrays it points to (keep
    them alive until the library has copied them). None leaves the
    library's default in place."""
    p = _lib.llms_sampling_params()
    _lib.llms_sampling_params_init(byref(p))
    for name, v in (("max_tokens", max_tokens), ("temperature", temperature), ("top_k", top_k),
                    ("top_p", top_p), ("min_p", min_p), ("repeat_penalty", repeat_penalty),
                    ("frequency_penalty", frequency_penalty),
                    ("presence_penalty", presence_penalty), ("penalty_last_n", penalty_last_n),
                    ("seed", seed), ("min_tokens", min_tokens), ("n_logprobs", n_logprobs)):
        if v is not None:
            setattr(p, name, v)
    if ignore_eog:
        p.flags |= 1
    keep = []
    if stop:
        if isinstance(stop, str):
            stop = [stop]
        stops = (c_char_p * len(stop))(*[s.encode() for s in stop])
        p.stop, p.n_stop = stops, len(stop)
        keep.append(stops)
    if logit_bias:
        items = list(logit_bias.items())
        lb = (_lib.llms_logit_bias * len(items))()
        for i, (t, b) in enumerate(items):
            lb[i].token, lb[i].bias = t, b
        p.logit_bias, p.n_logit_bias = lb, len(items)
        keep.append(lb)
    return p, keep


class Step:
    """One generated token: token id, text released (str), logprob,
    top_logprobs [(token, logprob)], and finish_reason (None until done)."""

    __slots__ = ("token", "text", "logprob", "top_logprobs", "finish_reason", "n_generated")

    def __repr__(self):
        return "Step(token=%r, text=%r, finish_reason=%r)" % (self.token, self.text, self.finish_reason)


class Session(_Handle):
    """One conversation (KV cache, position, sampler). Use it from one thread
    at a time; separate sessions may run on separate threads concurrently."""

    _destroy = staticmethod(_lib.llms_session_destroy)

    def __init__(self, model, n_ctx=0, context_shift=False, n_keep=0, _handle=None):
        super().__init__()
        self.model = model
        self.finish_reason = None
        if _handle is None:
            p = _lib.llms_session_params()
            _lib.llms_session_params_init(byref(p))
            p.n_ctx = n_ctx
            p.flags = 1 if context_shift else 0
            p.n_keep = n_keep
            h = c_void_p()
            _check(_lib.llms_session_create(model.handle, byref(p), byref(h)))
            _handle = h.value
        self._h = _handle
        model._children.add(self)

    def _ck(self, st):
        return _check(st, self._h)

    # -- state ------------------------------------------------------------
    @property
    def n_tokens(self):
        return _lib.llms_session_n_tokens(self.handle)

    @property
    def n_ctx(self):
        return _lib.llms_session_n_ctx(self.handle)

    @property
    def tokens(self):
        n = self.n_tokens
        p = _lib.llms_session_tokens(self.handle)
        return list(p[:n]) if n else []

    @property
    def usable(self):
        return bool(_lib.llms_session_usable(self.handle))

    def fork(self):
        h = c_void_p()
        self._ck(_lib.llms_session_fork(self.handle, byref(h)))
        return Session(self.model, _handle=h.value)

    def reset(self):
        self._ck(_lib.llms_session_reset(self.handle))

    def truncate(self, n_tokens):
        self._ck(_lib.llms_session_truncate(self.handle, n_tokens))

    # -- input ------------------------------------------------------------
    def feed(self, prompt, add_bos=None, parse_special=False):
        """Evaluate text (str/bytes) or a list of token ids. For text, BOS
        follows the model's metadata unless add_bos is True or False."""
        if isinstance(prompt, (str, bytes)):
            data = prompt.encode() if isinstance(prompt, str) else prompt
            if add_bos is None:
                flags = TOKENIZE_MODEL_DEFAULTS
            else:
                flags = TOKENIZE_ADD_BOS if add_bos else 0
            if parse_special:
                flags |= TOKENIZE_PARSE_SPECIAL
            self._ck(_lib.llms_session_feed_text(self.handle, data, len(data), flags))
        else:
            self.feed_tokens(prompt)

    def feed_tokens(self, tokens, logits=False):
        """Evaluate token ids; with logits=True return one list of n_vocab
        floats per fed token."""
        tokens = list(tokens)
        arr = (c_int32 * len(tokens))(*tokens)
        if not logits:
            self._ck(_lib.llms_session_feed_tokens(self.handle, arr, len(tokens)))
            return None
        nv = self.model.n_vocab
        out = (c_float * (len(tokens) * nv))()
        self._ck(_lib.llms_session_feed_tokens_logits(self.handle, arr, len(tokens), out))
        return [out[i * nv:(i + 1) * nv] for i in range(len(tokens))]

    def logits(self):
        """Logits after the last evaluated token (a list of n_vocab floats),
        or None before anything was evaluated."""
        p = _lib.llms_session_logits(self.handle)
        if not p:
            return None
        return p[:self.model.n_vocab]

    # -- generation -------------------------------------------------------
    def _begin(self, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
               frequency_penalty, presence_penalty, penalty_last_n, seed, min_tokens, stop,
               logit_bias, n_logprobs, ignore_eog):
        # The library copies stop strings and biases in generate_begin, so
        # the arrays in `keep` only need to live through that call.
        p, keep = _sampling_params(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                                   frequency_penalty, presence_penalty, penalty_last_n, seed,
                                   min_tokens, stop, logit_bias, n_logprobs, ignore_eog)
        self.finish_reason = None
        self._ck(_lib.llms_session_generate_begin(self.handle, byref(p)))

    def steps(self, prompt=None, *, max_tokens=None, temperature=None, top_k=None, top_p=None,
              min_p=None, repeat_penalty=None, frequency_penalty=None, presence_penalty=None,
              penalty_last_n=None, seed=None, min_tokens=None, stop=None, logit_bias=None,
              n_logprobs=None, ignore_eog=False):
        """Generator of Step objects; feeds `prompt` first if given. The
        last Step has finish_reason set (its text is any held-back rest).
        Sampling arguments left as None keep the library's defaults."""
        if prompt is not None:
            self.feed(prompt)
        self._begin(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, frequency_penalty,
                    presence_penalty, penalty_last_n, seed, min_tokens, stop, logit_bias,
                    n_logprobs, ignore_eog)
        return self._step_iter()

    def _step_iter(self):
        r = _lib.llms_step_result()
        _lib.llms_step_result_init(byref(r))
        while True:
            st = _lib.llms_session_step(self.handle, byref(r))
            self._ck(st)
            s = Step()
            s.token = r.token
            s.text = ctypes.string_at(r.text, r.text_len).decode("utf-8", "replace") if r.text_len else ""
            s.logprob = r.logprob
            s.top_logprobs = [(r.top_logprobs[i].token, r.top_logprobs[i].logprob)
                              for i in range(r.n_top_logprobs)]
            s.n_generated = r.n_generated
            s.finish_reason = FINISH_NAMES.get(r.finish_reason, r.finish_reason) if st == Status.DONE else None
            if st == Status.DONE:
                self.finish_reason = s.finish_reason
                yield s
                return
            yield s

    def stream(self, prompt=None, **sampling):
        """Iterator of text pieces as they are released (never a partial
        UTF-8 character). `finish_reason` is set when it ends."""
        for s in self.steps(prompt, **sampling):
            if s.text:
                yield s.text

    def generate(self, prompt=None, **sampling):
        """The whole completion as one string (see steps() for the arguments)."""
        return "".join(self.stream(prompt, **sampling))
