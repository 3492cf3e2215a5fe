// Package llmserve is a cgo binding of libllmserve (include/llmserve.h):
// load GGUF models, run sessions, generate and stream text.
//
// A Model is safe for concurrent use; a Session is used by one goroutine at
// a time (separate sessions run concurrently). Close releases a handle at
// once; a finalizer releases it otherwise. Children keep their parents
// reachable, so a finalizer never frees a model under a live session.
package llmserve

/*
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llmserve.h"

// llms_errmsg() is per OS thread and a goroutine may move between threads
// between two cgo calls, so every call that can fail copies the detail into
// the caller's buffer within the same cgo call.
#define GO_MSG_CAP 512
static llms_status go_msg(llms_status st, const llms_session *s, char *msg) {
    if (st < 0) {
        const char *m = s ? llms_session_errmsg(s) : "";
        if (!m || !*m) m = llms_errmsg();
        snprintf(msg, GO_MSG_CAP, "%s", m ? m : "");
    }
    return st;
}

static llms_status go_context_create(int32_t n_threads, int32_t backend, llms_context **out, char *msg) {
    llms_context_params p;
    llms_context_params_init(&p);
    p.n_threads = n_threads;
    p.backend = backend;
    return go_msg(llms_context_create(&p, out), NULL, msg);
}

static llms_status go_model_load(llms_context *ctx, const char *path, uint32_t flags,
                                 llms_model **out, char *msg) {
    llms_model_params p;
    llms_model_params_init(&p);
    p.flags = flags;
    return go_msg(llms_model_load(ctx, path, &p, out), NULL, msg);
}

static llms_status go_model_info(const llms_model *m, llms_model_info *info, char *msg) {
    llms_model_info_init(info);
    return go_msg(llms_model_get_info(m, info), NULL, msg);
}

static llms_status go_meta_string(const llms_model *m, const char *key, const char **v, size_t *n, char *msg) {
    return go_msg(llms_model_meta_string(m, key, v, n), NULL, msg);
}

static llms_status go_meta_int(const llms_model *m, const char *key, int64_t *v, char *msg) {
    return go_msg(llms_model_meta_int(m, key, v), NULL, msg);
}

static llms_status go_tokenize(const llms_model *m, const char *text, size_t len, uint32_t flags,
                               int32_t *tokens, size_t cap, size_t *n, char *msg) {
    return go_msg(llms_tokenize(m, text, len, flags, tokens, cap, n), NULL, msg);
}

static llms_status go_detokenize(const llms_model *m, const int32_t *tokens, size_t n, char *buf,
                                 size_t cap, size_t *len, char *msg) {
    return go_msg(llms_detokenize(m, tokens, n, 0, buf, cap, len), NULL, msg);
}

static llms_status go_chat(const llms_model *m, const char *tmpl, const llms_chat_message *msgs,
                           size_t n, int32_t add_assistant, char *buf, size_t cap, size_t *len, char *msg) {
    return go_msg(llms_chat_apply_template(m, tmpl, msgs, n, add_assistant, buf, cap, len), NULL, msg);
}

static llms_status go_session_create(llms_model *m, uint32_t n_ctx, llms_session **out, char *msg) {
    llms_session_params p;
    llms_session_params_init(&p);
    p.n_ctx = n_ctx;
    return go_msg(llms_session_create(m, &p, out), NULL, msg);
}

static llms_status go_fork(const llms_session *s, llms_session **out, char *msg) {
    return go_msg(llms_session_fork(s, out), s, msg);
}
static llms_status go_reset(llms_session *s, char *msg) { return go_msg(llms_session_reset(s), s, msg); }
static llms_status go_truncate(llms_session *s, uint32_t n, char *msg) {
    return go_msg(llms_session_truncate(s, n), s, msg);
}
static llms_status go_feed_text(llms_session *s, const char *text, size_t len, uint32_t flags, char *msg) {
    return go_msg(llms_session_feed_text(s, text, len, flags), s, msg);
}
static llms_status go_feed_tokens(llms_session *s, const int32_t *t, size_t n, char *msg) {
    return go_msg(llms_session_feed_tokens(s, t, n), s, msg);
}
static llms_status go_begin(llms_session *s, const llms_sampling_params *p, char *msg) {
    return go_msg(llms_session_generate_begin(s, p), s, msg);
}

// One step; the released text is copied into `text` (grown by the caller
// when *text_len exceeds cap) so Go never reads library memory later.
static llms_status go_step(llms_session *s, llms_step_result *r, char *msg) {
    llms_step_result_init(r);
    return go_msg(llms_session_step(s, r), s, msg);
}
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Status is an llms_status: 0 OK, positive non-error, negative errors
// with frozen numbers.
type Status int32

const (
	StatusOK    Status = 0
	StatusToken Status = 1
	StatusDone  Status = 2
)

// String is the library's name and description of the status.
func (s Status) String() string { return C.GoString(C.llms_status_string(C.llms_status(s))) }

// Error is a failed library call: the status and the library's detail.
// errors.Is(err, llmserve.ErrContextFull) compares statuses.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "llmserve: " + e.Status.String()
	}
	return "llmserve: " + e.Status.String() + " (" + e.Message + ")"
}

// Is matches another *Error with the same status (the Err* values).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status
}

// Sentinel errors for errors.Is.
var (
	ErrInvalidArgument = &Error{Status: -1}
	ErrNoMemory        = &Error{Status: -2}
	ErrIO              = &Error{Status: -3}
	ErrNotFound        = &Error{Status: -5}
	ErrUnsupported     = &Error{Status: -6}
	ErrState           = &Error{Status: -9}
	ErrGGUFMagic       = &Error{Status: -20}
	ErrTokenRange      = &Error{Status: -50}
	ErrContextFull     = &Error{Status: -51}
	ErrPromptTooLong   = &Error{Status: -52}
	ErrTemplate        = &Error{Status: -53}
	ErrBusy            = &Error{Status: -54}
	ErrRateLimited     = &Error{Status: -55}
	ErrCancelled       = &Error{Status: -56}
	ErrTimeout         = &Error{Status: -57}
)

type msgBuf [C.GO_MSG_CAP]C.char

func (b *msgBuf) ptr() *C.char { return &b[0] }

func check(st C.llms_status, msg *msgBuf) error {
	if st >= 0 {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(msg.ptr())}
}

// Version is the library's run-time version ("0.2.0").
func Version() string { return C.GoString(C.llms_version_string()) }

// Backends for ContextOptions.Backend.
const (
	BackendAuto   = 0
	BackendCPU    = 1
	BackendVulkan = 2
)

// ContextOptions; the zero value means the library's defaults.
type ContextOptions struct {
	Threads int32 // CPU worker threads; 0 = number of cores
	Backend int32 // Backend*
}

// Context is the runtime (backend, worker threads).
type Context struct {
	mu     sync.Mutex
	h      *C.llms_context
	models int
}

// NewContext creates a runtime context.
func NewContext(opts ContextOptions) (*Context, error) {
	var msg msgBuf
	var h *C.llms_context
	if err := check(C.go_context_create(C.int32_t(opts.Threads), C.int32_t(opts.Backend), &h, msg.ptr()), &msg); err != nil {
		return nil, err
	}
	c := &Context{h: h}
	runtime.SetFinalizer(c, func(c *Context) { c.Close() })
	return c, nil
}

// Close destroys the context; its models must be closed first (ErrState
// otherwise). Safe to call twice.
func (c *Context) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return nil
	}
	if c.models > 0 {
		return &Error{Status: ErrState.Status, Message: fmt.Sprintf("%d models still open", c.models)}
	}
	C.llms_context_destroy(c.h)
	c.h = nil
	return nil
}

// Model flags for LoadModel.
const (
	ModelNoMmap    = 1 << 0
	ModelVocabOnly = 1 << 1
)

// Model is a loaded GGUF model, safe for concurrent use.
type Model struct {
	mu       sync.Mutex
	h        *C.llms_model
	ctx      *Context
	ownCtx   bool
	sessions int
	scheds   int // open schedulers (scheduler.go)
}

// LoadModel loads a GGUF file on this context.
func (c *Context) LoadModel(path string, flags uint32) (*Model, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return nil, &Error{Status: ErrState.Status, Message: "context is closed"}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg msgBuf
	var h *C.llms_model
	if err := check(C.go_model_load(c.h, cpath, C.uint32_t(flags), &h, msg.ptr()), &msg); err != nil {
		return nil, err
	}
	c.models++
	m := &Model{h: h, ctx: c}
	runtime.SetFinalizer(m, func(m *Model) { m.Close() })
	return m, nil
}

// Load loads a model on a context of its own (closed with the model).
func Load(path string, opts ContextOptions) (*Model, error) {
	c, err := NewContext(opts)
	if err != nil {
		return nil, err
	}
	m, err := c.LoadModel(path, 0)
	if err != nil {
		c.Close()
		return nil, err
	}
	m.ownCtx = true
	return m, nil
}

// Close destroys the model; its sessions and schedulers must be closed first (ErrState
// otherwise). Safe to call twice.
func (m *Model) Close() error {
	m.mu.Lock()
	if m.h == nil {
		m.mu.Unlock()
		return nil
	}
	if m.sessions > 0 || m.scheds > 0 {
		n, k := m.sessions, m.scheds
		m.mu.Unlock()
		return &Error{Status: ErrState.Status, Message: fmt.Sprintf("%d sessions and %d schedulers still open", n, k)}
	}
	C.llms_model_destroy(m.h)
	m.h = nil
	m.mu.Unlock()
	m.ctx.mu.Lock()
	m.ctx.models--
	m.ctx.mu.Unlock()
	if m.ownCtx {
		return m.ctx.Close()
	}
	return nil
}

// handle returns the live handle; callers hold no lock during the C call,
// which is fine because a model with open sessions cannot be destroyed and
// Model calls themselves are thread-safe in C.
func (m *Model) handle() (*C.llms_model, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return nil, &Error{Status: ErrState.Status, Message: "model is closed"}
	}
	return m.h, nil
}

// Info is a summary of the model.
type Info struct {
	Architecture, Name                       string
	Params, Bytes                            uint64
	Tensors, Metadata, Vocab, CtxTrain, Embd uint32
	Layers, Heads, HeadsKV, FF               uint32
}

// Info returns the model's summary.
func (m *Model) Info() (Info, error) {
	h, err := m.handle()
	if err != nil {
		return Info{}, err
	}
	var msg msgBuf
	var i C.llms_model_info
	if err := check(C.go_model_info(h, &i, msg.ptr()), &msg); err != nil {
		return Info{}, err
	}
	defer runtime.KeepAlive(m)
	return Info{C.GoString(i.architecture), C.GoString(i.name), uint64(i.n_params), uint64(i.n_bytes),
		uint32(i.n_tensors), uint32(i.n_metadata), uint32(i.n_vocab), uint32(i.n_ctx_train),
		uint32(i.n_embd), uint32(i.n_layer), uint32(i.n_head), uint32(i.n_head_kv), uint32(i.n_ff)}, nil
}

// MetaString returns a string metadata value.
func (m *Model) MetaString(key string) (string, error) {
	h, err := m.handle()
	if err != nil {
		return "", err
	}
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	var msg msgBuf
	var v *C.char
	var n C.size_t
	if err := check(C.go_meta_string(h, ckey, &v, &n, msg.ptr()), &msg); err != nil {
		return "", err
	}
	s := C.GoStringN(v, C.int(n))
	runtime.KeepAlive(m)
	return s, nil
}

// MetaInt returns an integer metadata value.
func (m *Model) MetaInt(key string) (int64, error) {
	h, err := m.handle()
	if err != nil {
		return 0, err
	}
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	var msg msgBuf
	var v C.int64_t
	err = check(C.go_meta_int(h, ckey, &v, msg.ptr()), &msg)
	runtime.KeepAlive(m)
	return int64(v), err
}

// ChatTemplate returns the model's template text and whether it has one.
func (m *Model) ChatTemplate() (string, bool) {
	h, err := m.handle()
	if err != nil {
		return "", false
	}
	t := C.llms_model_chat_template(h)
	defer runtime.KeepAlive(m)
	if t == nil {
		return "", false
	}
	return C.GoString(t), true
}

// Tokenize flags.
const (
	TokenizeAddBOS        = 1 << 0
	TokenizeParseSpecial  = 1 << 1
	TokenizeModelDefaults = 1 << 2
)

// Tokenize turns text into token ids.
func (m *Model) Tokenize(text string, flags uint32) ([]int32, error) {
	h, err := m.handle()
	if err != nil {
		return nil, err
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	defer runtime.KeepAlive(m)
	toks := make([]int32, len(text)+4)
	for try := 0; try < 2; try++ {
		var msg msgBuf
		var n C.size_t
		st := C.go_tokenize(h, ctext, C.size_t(len(text)), C.uint32_t(flags),
			(*C.int32_t)(unsafe.Pointer(&toks[0])), C.size_t(len(toks)), &n, msg.ptr())
		if st == C.LLMS_ERR_BUFFER_TOO_SMALL {
			toks = make([]int32, int(n)+1)
			continue
		}
		if err := check(st, &msg); err != nil {
			return nil, err
		}
		return toks[:n], nil
	}
	return nil, &Error{Status: -4}
}

// Detokenize turns token ids into text.
func (m *Model) Detokenize(tokens []int32) (string, error) {
	h, err := m.handle()
	if err != nil {
		return "", err
	}
	defer runtime.KeepAlive(m)
	ct := (*C.int32_t)(C.malloc(C.size_t(len(tokens)+1) * 4))
	defer C.free(unsafe.Pointer(ct))
	copy(unsafe.Slice((*int32)(unsafe.Pointer(ct)), len(tokens)), tokens)
	return grow(func(buf *C.char, cap C.size_t, n *C.size_t, msg *msgBuf) C.llms_status {
		return C.go_detokenize(h, ct, C.size_t(len(tokens)), buf, cap, n, msg.ptr())
	})
}

// Message is one chat message.
type Message struct{ Role, Content string }

// ApplyChatTemplate renders messages with the model's template, or with
// tmpl (template text or a family name such as "chatml") if not empty.
func (m *Model) ApplyChatTemplate(msgs []Message, addAssistant bool, tmpl string) (string, error) {
	h, err := m.handle()
	if err != nil {
		return "", err
	}
	defer runtime.KeepAlive(m)
	// The array holds C pointers, so it lives in C memory (cgo rules).
	arr := (*C.llms_chat_message)(C.malloc(C.size_t(len(msgs)+1) * C.size_t(unsafe.Sizeof(C.llms_chat_message{}))))
	defer C.free(unsafe.Pointer(arr))
	cm := unsafe.Slice(arr, len(msgs)+1)
	for i, x := range msgs {
		cm[i].role, cm[i].content = C.CString(x.Role), C.CString(x.Content)
		defer C.free(unsafe.Pointer(cm[i].role))
		defer C.free(unsafe.Pointer(cm[i].content))
	}
	var ctmpl *C.char
	if tmpl != "" {
		ctmpl = C.CString(tmpl)
		defer C.free(unsafe.Pointer(ctmpl))
	}
	add := C.int32_t(0)
	if addAssistant {
		add = 1
	}
	return grow(func(buf *C.char, cap C.size_t, n *C.size_t, msg *msgBuf) C.llms_status {
		return C.go_chat(h, ctmpl, arr, C.size_t(len(msgs)), add, buf, cap, n, msg.ptr())
	})
}

func grow(call func(*C.char, C.size_t, *C.size_t, *msgBuf) C.llms_status) (string, error) {
	size := C.size_t(256)
	for try := 0; try < 2; try++ {
		buf := (*C.char)(C.malloc(size))
		var n C.size_t
		var msg msgBuf
		st := call(buf, size, &n, &msg)
		if st == C.LLMS_ERR_BUFFER_TOO_SMALL {
			C.free(unsafe.Pointer(buf))
			size = n + 1
			continue
		}
		err := check(st, &msg)
		s := C.GoStringN(buf, C.int(n))
		C.free(unsafe.Pointer(buf))
		return s, err
	}
	return "", &Error{Status: -4}
}

// Session is one conversation. Use it from one goroutine at a time.
type Session struct {
	h     *C.llms_session
	model *Model
	once  sync.Once
}

// NewSession creates a session; nCtx 0 means the model's context length.
func (m *Model) NewSession(nCtx uint32) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return nil, &Error{Status: ErrState.Status, Message: "model is closed"}
	}
	var msg msgBuf
	var h *C.llms_session
	if err := check(C.go_session_create(m.h, C.uint32_t(nCtx), &h, msg.ptr()), &msg); err != nil {
		return nil, err
	}
	return m.adopt(h), nil
}

// adopt wraps a new handle; the caller holds m.mu.
func (m *Model) adopt(h *C.llms_session) *Session {
	m.sessions++
	s := &Session{h: h, model: m}
	runtime.SetFinalizer(s, func(s *Session) { s.Close() })
	return s
}

// Close destroys the session. Safe to call twice.
func (s *Session) Close() error {
	s.once.Do(func() {
		C.llms_session_destroy(s.h)
		s.h = nil
		s.model.mu.Lock()
		s.model.sessions--
		s.model.mu.Unlock()
	})
	return nil
}

func (s *Session) live() error {
	if s.h == nil {
		return &Error{Status: ErrState.Status, Message: "session is closed"}
	}
	return nil
}

// Fork copies the session (tokens, KV cache, sampler state).
func (s *Session) Fork() (*Session, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	defer runtime.KeepAlive(s)
	var msg msgBuf
	var h *C.llms_session
	if err := check(C.go_fork(s.h, &h, msg.ptr()), &msg); err != nil {
		return nil, err
	}
	s.model.mu.Lock()
	defer s.model.mu.Unlock()
	return s.model.adopt(h), nil
}

// Reset forgets everything.
func (s *Session) Reset() error {
	if err := s.live(); err != nil {
		return err
	}
	defer runtime.KeepAlive(s)
	var msg msgBuf
	return check(C.go_reset(s.h, msg.ptr()), &msg)
}

// Truncate keeps the first n tokens.
func (s *Session) Truncate(n uint32) error {
	if err := s.live(); err != nil {
		return err
	}
	defer runtime.KeepAlive(s)
	var msg msgBuf
	return check(C.go_truncate(s.h, C.uint32_t(n), msg.ptr()), &msg)
}

// NTokens is the session's position.
func (s *Session) NTokens() uint32 {
	if s.h == nil {
		return 0
	}
	defer runtime.KeepAlive(s)
	return uint32(C.llms_session_n_tokens(s.h))
}

// Feed evaluates text (BOS as the model's metadata says).
func (s *Session) Feed(text string) error {
	if err := s.live(); err != nil {
		return err
	}
	defer runtime.KeepAlive(s)
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	var msg msgBuf
	return check(C.go_feed_text(s.h, ctext, C.size_t(len(text)), TokenizeModelDefaults, msg.ptr()), &msg)
}

// FeedTokens evaluates token ids.
func (s *Session) FeedTokens(tokens []int32) error {
	if err := s.live(); err != nil {
		return err
	}
	defer runtime.KeepAlive(s)
	var msg msgBuf
	var p *C.int32_t
	if len(tokens) > 0 {
		p = (*C.int32_t)(unsafe.Pointer(&tokens[0]))
	}
	return check(C.go_feed_tokens(s.h, p, C.size_t(len(tokens)), msg.ptr()), &msg)
}

// Sampling parameters; DefaultSampling gives the library's defaults.
type Sampling struct {
	Temperature   float32 // 0 = greedy
	TopK          int32
	TopP, MinP    float32
	RepeatPenalty float32
	Seed          uint64
	MaxTokens     int32 // -1 = until the context is full
	MinTokens     int32
	Stop          []string
	IgnoreEOG     bool
}

// DefaultSampling returns the library's default sampling parameters.
func DefaultSampling() Sampling {
	var p C.llms_sampling_params
	C.llms_sampling_params_init(&p)
	return Sampling{Temperature: float32(p.temperature), TopK: int32(p.top_k), TopP: float32(p.top_p),
		MinP: float32(p.min_p), RepeatPenalty: float32(p.repeat_penalty), Seed: uint64(p.seed),
		MaxTokens: int32(p.max_tokens), MinTokens: int32(p.min_tokens)}
}

// Greedy returns deterministic sampling for at most maxTokens tokens.
func Greedy(maxTokens int32) Sampling {
	p := DefaultSampling()
	p.Temperature = 0
	p.MaxTokens = maxTokens
	return p
}

// FinishReason says why generation ended (LLMS_FINISH_*).
type FinishReason int32

const (
	FinishNone FinishReason = iota
	FinishEOG
	FinishStop
	FinishLength
	FinishContextFull
	FinishError
	FinishCancelled
	FinishTimeout
	FinishRejected // scheduler: refused after submission
)

// cSampling fills p from sp; the returned func frees the C copies of the
// stop strings (the library copies them during the call that takes p).
func cSampling(sp Sampling, p *C.llms_sampling_params) (free func()) {
	C.llms_sampling_params_init(p)
	p.temperature, p.top_k, p.top_p, p.min_p = C.float(sp.Temperature), C.int32_t(sp.TopK), C.float(sp.TopP), C.float(sp.MinP)
	p.repeat_penalty, p.seed = C.float(sp.RepeatPenalty), C.uint64_t(sp.Seed)
	p.max_tokens, p.min_tokens = C.int32_t(sp.MaxTokens), C.int32_t(sp.MinTokens)
	if sp.IgnoreEOG {
		p.flags |= 1
	}
	// The library copies the stop strings in generate_begin.
	if len(sp.Stop) > 0 {
		arr := (**C.char)(C.malloc(C.size_t(len(sp.Stop)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
		cs := unsafe.Slice(arr, len(sp.Stop))
		for i, x := range sp.Stop {
			cs[i] = C.CString(x)
		}
		p.stop, p.n_stop = arr, C.uint32_t(len(sp.Stop))
		return func() {
			for _, c := range cs {
				C.free(unsafe.Pointer(c))
			}
			C.free(unsafe.Pointer(arr))
		}
	}
	return func() {}
}

func (s *Session) begin(sp Sampling) error {
	var p C.llms_sampling_params
	free := cSampling(sp, &p)
	defer free()
	var msg msgBuf
	return check(C.go_begin(s.h, &p, msg.ptr()), &msg)
}

// Event is one streamed piece. The last event has Done set, with the
// FinishReason, and Err if generation failed or was cancelled.
type Event struct {
	Text         string
	Token        int32
	Done         bool
	FinishReason FinishReason
	Err          error
}

// run drives the step loop, calling emit for every event; stops at the
// first error or when ctx is done (checked between tokens).
func (s *Session) run(ctx context.Context, emit func(Event) bool) {
	defer runtime.KeepAlive(s)
	var r C.llms_step_result
	for {
		if err := ctx.Err(); err != nil {
			emit(Event{Done: true, FinishReason: FinishCancelled,
				Err: &cancelledError{err}})
			return
		}
		var msg msgBuf
		st := C.go_step(s.h, &r, msg.ptr())
		if err := check(st, &msg); err != nil {
			emit(Event{Done: true, FinishReason: FinishError, Err: err})
			return
		}
		ev := Event{Token: int32(r.token)}
		if r.text_len > 0 {
			ev.Text = C.GoStringN(r.text, C.int(r.text_len))
		}
		if Status(st) == StatusDone {
			ev.Done, ev.FinishReason = true, FinishReason(r.finish_reason)
			emit(ev)
			return
		}
		if !emit(ev) {
			return
		}
	}
}

// Generate feeds prompt (if not empty) and returns the whole completion.
// Cancelling ctx stops between tokens with an error matching both
// ErrCancelled and ctx.Err(); the text so far is returned with it.
func (s *Session) Generate(ctx context.Context, prompt string, sp Sampling) (string, FinishReason, error) {
	if err := s.prepare(prompt, sp); err != nil {
		return "", FinishError, err
	}
	var out []byte
	var last Event
	s.run(ctx, func(ev Event) bool {
		out = append(out, ev.Text...)
		last = ev
		return true
	})
	return string(out), last.FinishReason, last.Err
}

// Stream feeds prompt (if not empty) and streams the completion on the
// returned channel; the last event has Done set, then the channel is
// closed. The session must not be used until then. Cancelling ctx ends the
// stream promptly with a Done event whose Err matches ErrCancelled and
// ctx.Err(). Receive until the channel is closed, also after cancelling:
// the generating goroutine exits only once its final event is taken.
func (s *Session) Stream(ctx context.Context, prompt string, sp Sampling) (<-chan Event, error) {
	if err := s.prepare(prompt, sp); err != nil {
		return nil, err
	}
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		sentDone := false
		s.run(ctx, func(ev Event) bool {
			if ev.Done {
				ch <- ev
				sentDone = true
				return false
			}
			// Pieces still unsent when ctx ends are dropped.
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		})
		if !sentDone {
			ch <- Event{Done: true, FinishReason: FinishCancelled, Err: &cancelledError{ctx.Err()}}
		}
	}()
	return ch, nil
}

func (s *Session) prepare(prompt string, sp Sampling) error {
	if err := s.live(); err != nil {
		return err
	}
	if prompt != "" {
		if err := s.Feed(prompt); err != nil {
			return err
		}
	}
	return s.begin(sp)
}

// cancelledError matches both ErrCancelled and the context's error
// (context.Canceled or context.DeadlineExceeded) under errors.Is.
type cancelledError struct{ cause error }

func (e *cancelledError) Error() string { return "llmserve: cancelled: " + e.cause.Error() }
func (e *cancelledError) Unwrap() error { return e.cause }
func (e *cancelledError) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == ErrCancelled.Status
}
