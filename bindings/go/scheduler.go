package llmserve

/*
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llmserve.h"

#define GO_SMSG_CAP 512
static llms_status go_smsg(llms_status st, char *msg) {
    if (st < 0) {
        const char *m = llms_errmsg();
        snprintf(msg, GO_SMSG_CAP, "%s", m ? m : "");
    }
    return st;
}

static llms_status go_sched_create(llms_model *m, uint32_t flags, uint32_t max_batch_tokens,
                                   uint32_t max_running, uint32_t queue_capacity, uint32_t n_ctx,
                                   uint64_t kv_budget_bytes, uint32_t aging_ms,
                                   llms_scheduler **out, char *msg) {
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.flags = flags;
    if (max_batch_tokens) p.max_batch_tokens = max_batch_tokens;
    if (max_running) p.max_running = max_running;
    if (queue_capacity) p.queue_capacity = queue_capacity;
    p.n_ctx = n_ctx;
    p.kv_budget_bytes = kv_budget_bytes;
    if (aging_ms) p.aging_ms = aging_ms;
    return go_smsg(llms_scheduler_create(m, &p, out), msg);
}

// The request parameters are built here, on the C stack, so that no Go
// memory holding pointers is passed to C.
static llms_status go_sched_submit(llms_scheduler *s, uint32_t flags, const char *prompt, size_t prompt_len,
                                   const int32_t *tokens, size_t n_tokens, const llms_sampling_params *sp,
                                   const char *tenant, int32_t priority, uint32_t deadline_ms,
                                   uint64_t tag, uint64_t *id, char *msg) {
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.flags = flags;
    rp.prompt = prompt;
    rp.prompt_len = prompt_len;
    rp.tokens = tokens;
    rp.n_tokens = n_tokens;
    rp.sampling = sp;
    rp.tenant = tenant;
    rp.priority = priority;
    rp.deadline_ms = deadline_ms;
    rp.user_tag = tag;
    return go_smsg(llms_scheduler_submit(s, &rp, id), msg);
}

static llms_status go_sched_cancel(llms_scheduler *s, uint64_t id) { return llms_scheduler_cancel(s, id); }

static llms_status go_sched_poll(llms_scheduler *s, llms_event *ev, char *buf, size_t cap, int32_t timeout_ms,
                                 char *msg) {
    memset(ev, 0, sizeof *ev);
    ev->struct_size = sizeof *ev;
    ev->text_buf = buf;
    ev->text_cap = cap;
    llms_status st = llms_scheduler_poll(s, ev, timeout_ms);
    return st == LLMS_ERR_BUFFER_TOO_SMALL ? st : go_smsg(st, msg);
}

static llms_status go_sched_tenant(llms_scheduler *s, const char *name, uint32_t max_concurrent,
                                   uint32_t tokens_per_minute, uint32_t max_prompt_tokens,
                                   uint32_t max_output_tokens, uint32_t weight, const char *group, char *msg) {
    llms_tenant_params p;
    llms_tenant_params_init(&p);
    p.name = name;
    p.max_concurrent = max_concurrent;
    p.tokens_per_minute = tokens_per_minute;
    p.max_prompt_tokens = max_prompt_tokens;
    p.max_output_tokens = max_output_tokens;
    if (weight) p.weight = weight;
    p.sharing_group = group;
    return go_smsg(llms_scheduler_set_tenant(s, &p), msg);
}

static llms_status go_sched_metrics(llms_scheduler *s, char *buf, size_t cap, size_t *len, char *msg) {
    llms_status st = llms_scheduler_metrics_prometheus(s, buf, cap, len);
    return st == LLMS_ERR_BUFFER_TOO_SMALL ? st : go_smsg(st, msg);
}
*/
import "C"

import (
	"context"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

type smsgBuf [C.GO_SMSG_CAP]C.char

func scheck(st C.llms_status, msg *smsgBuf) error {
	if st >= 0 {
		return nil
	}
	return &Error{Status: Status(st), Message: C.GoString(&msg[0])}
}

// SchedulerOptions; zero fields mean the library's defaults.
type SchedulerOptions struct {
	MaxBatchTokens uint32 // tokens per forward pass (256)
	MaxRunning     uint32 // requests generating at once (64)
	QueueCapacity  uint32 // waiting requests before ErrBusy (256)
	NCtx           uint32 // context per request; 0 = the model's
	KVBudgetBytes  uint64 // KV memory of the model's block pool; 0 = unlimited
	AgingMs        uint32 // a waiting request gains one priority level per AgingMs
	// Deterministic makes a request's greedy output bit-identical whatever
	// else is in the batch (slower prefill).
	Deterministic bool
}

// Request is one generation request for Scheduler.Submit.
type Request struct {
	Prompt string  // tokenized with the model's BOS defaults
	Tokens []int32 // appended after the prompt's tokens
	// MaxTokens: 0 or negative = until the context is full.
	MaxTokens   int32
	Temperature float32 // 0 = greedy
	Seed        uint64
	Stop        []string // stop strings (not included in the text)
	// Sampling, if not nil, replaces MaxTokens, Temperature, Seed and Stop.
	Sampling *Sampling
	Tenant   string        // registered with SetTenant; "" = the default tenant
	Priority int32         // higher runs first
	Timeout  time.Duration // from submission, ends with FinishTimeout; 0 = none
}

// Usage counts a request's tokens.
type Usage struct {
	PromptTokens     uint32
	CachedTokens     uint32 // prompt tokens served from the prefix cache
	CompletionTokens uint32
}

// StreamEvent is one piece of a scheduled request's output. The last event
// has Done set with the FinishReason and Usage, and Err when the request
// was cancelled (matching ErrCancelled and, when ctx ended it, ctx.Err()),
// timed out (ErrTimeout), rejected or failed.
type StreamEvent struct {
	Text         string
	Token        int32
	NGenerated   uint32
	Done         bool
	FinishReason FinishReason
	Usage        Usage
	Err          error
}

// Scheduler batches many requests into shared forward passes on the
// library's worker thread. It is safe for concurrent use. Events are taken
// by one dispatcher goroutine and routed to each request's Stream.
type Scheduler struct {
	c *schedCore
}

// schedCore is what the dispatcher goroutine holds, so that an unreferenced
// Scheduler (and no stream in flight) can still be finalized.
type schedCore struct {
	model *Model

	mu sync.RWMutex // read: a C call on h; write: destroying h
	h  *C.llms_scheduler

	smu     sync.Mutex
	streams map[uint64]*Stream // by user_tag
	nextTag uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// pollTimeoutMs bounds how long Close waits for the dispatcher.
const pollTimeoutMs = 20

// NewScheduler creates a scheduler for the model. The model cannot be
// closed while the scheduler is open.
func NewScheduler(m *Model, opts SchedulerOptions) (*Scheduler, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return nil, &Error{Status: ErrState.Status, Message: "model is closed"}
	}
	flags := C.uint32_t(C.LLMS_SCHEDULER_OWN_THREAD)
	if opts.Deterministic {
		flags |= C.LLMS_SCHEDULER_DETERMINISTIC
	}
	var msg smsgBuf
	var h *C.llms_scheduler
	st := C.go_sched_create(m.h, flags, C.uint32_t(opts.MaxBatchTokens), C.uint32_t(opts.MaxRunning),
		C.uint32_t(opts.QueueCapacity), C.uint32_t(opts.NCtx), C.uint64_t(opts.KVBudgetBytes),
		C.uint32_t(opts.AgingMs), &h, &msg[0])
	if err := scheck(st, &msg); err != nil {
		return nil, err
	}
	m.scheds++
	c := &schedCore{model: m, h: h, streams: map[uint64]*Stream{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go c.dispatch(h)
	s := &Scheduler{c: c}
	runtime.SetFinalizer(s, func(s *Scheduler) { s.c.close() })
	return s, nil
}

// Close cancels the requests in flight (their streams end with FinishCancelled
// and an error matching ErrCancelled), stops the dispatcher and destroys the
// scheduler. Safe to call more than once and concurrently.
func (s *Scheduler) Close() error {
	s.c.close()
	runtime.KeepAlive(s)
	return nil
}

func (c *schedCore) close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
		c.mu.Lock()
		C.llms_scheduler_destroy(c.h)
		c.h = nil
		c.mu.Unlock()
		c.model.mu.Lock()
		c.model.scheds--
		c.model.mu.Unlock()
		// Destroy dropped every request without events: end their streams.
		c.smu.Lock()
		streams := c.streams
		c.streams = map[uint64]*Stream{}
		c.smu.Unlock()
		for _, st := range streams {
			st.push(StreamEvent{Done: true, FinishReason: FinishCancelled,
				Err: &Error{Status: ErrCancelled.Status, Message: "scheduler closed"}})
		}
	})
}

// dispatch polls events until stop and hands them to their streams.
func (c *schedCore) dispatch(h *C.llms_scheduler) {
	defer close(c.done)
	size := C.size_t(256)
	buf := (*C.char)(C.malloc(size))
	defer func() { C.free(unsafe.Pointer(buf)) }()
	var ev C.llms_event
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		var msg smsgBuf
		st := C.go_sched_poll(h, &ev, buf, size, pollTimeoutMs, &msg[0])
		switch {
		case st == C.LLMS_ERR_BUFFER_TOO_SMALL:
			C.free(unsafe.Pointer(buf))
			size = ev.text_len + 1
			if size < 256 {
				size = 256
			}
			buf = (*C.char)(C.malloc(size))
			continue
		case st == C.LLMS_AGAIN:
			continue
		case st < 0:
			// Not expected; avoid spinning.
			time.Sleep(time.Millisecond)
			continue
		}
		c.route(&ev, buf)
	}
}

func (c *schedCore) route(ev *C.llms_event, buf *C.char) {
	out := StreamEvent{Token: int32(ev.token), NGenerated: uint32(ev.n_generated)}
	if ev.text_len > 0 {
		out.Text = C.GoStringN(buf, C.int(ev.text_len))
	}
	terminal := ev._type != C.LLMS_EVENT_TOKEN
	if terminal {
		out.Done = true
		out.FinishReason = FinishReason(ev.finish_reason)
		if ev._type == C.LLMS_EVENT_ERROR && out.FinishReason == FinishNone {
			out.FinishReason = FinishError
		}
		out.Usage = Usage{uint32(ev.prompt_tokens), uint32(ev.cached_tokens), uint32(ev.completion_tokens)}
		if ev.status < 0 {
			out.Err = &Error{Status: Status(ev.status)}
		}
	}
	tag := uint64(ev.user_tag)
	c.smu.Lock()
	st := c.streams[tag]
	if terminal {
		delete(c.streams, tag)
	}
	c.smu.Unlock()
	if st != nil {
		st.push(out)
	}
}

func (c *schedCore) cancel(id uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h != nil {
		C.go_sched_cancel(c.h, C.uint64_t(id)) // NOT_FOUND: it already ended
	}
}

// Stream is a submitted request. Receive from Events until it is closed:
// text pieces, then one event with Done set. Cancelling the Submit context
// cancels the request; its final event still comes (FinishCancelled, or how
// it ended if it finished first), and pieces not yet received are dropped.
// A stream's goroutine exits only once its final event is received: keep
// receiving until Events is closed, also after cancelling.
type Stream struct {
	// Events carries the request's events; closed after the Done event.
	Events <-chan StreamEvent
	// ID is the library's request id.
	ID uint64

	ch    chan StreamEvent
	sched *Scheduler // keeps the scheduler alive while the stream runs
	ctx   context.Context

	mu    sync.Mutex
	queue []StreamEvent
	wake  chan struct{}
}

func (st *Stream) push(ev StreamEvent) {
	st.mu.Lock()
	st.queue = append(st.queue, ev)
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

func (st *Stream) pop() (StreamEvent, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.queue) == 0 {
		return StreamEvent{}, false
	}
	ev := st.queue[0]
	st.queue[0] = StreamEvent{}
	st.queue = st.queue[1:]
	return ev, true
}

// forward moves queued events to the channel and watches the context.
func (st *Stream) forward() {
	defer close(st.ch)
	done := st.ctx.Done()
	cancelled := false
	onCancel := func() {
		cancelled, done = true, nil
		st.sched.c.cancel(st.ID)
	}
	for {
		ev, ok := st.pop()
		if !ok {
			select {
			case <-st.wake:
			case <-done:
				onCancel()
			}
			continue
		}
		if ev.Done {
			if cancelled && ev.FinishReason == FinishCancelled {
				ev.Err = &cancelledError{st.ctx.Err()}
			}
			st.ch <- ev
			runtime.KeepAlive(st.sched)
			return
		}
		if cancelled {
			continue
		}
		select {
		case st.ch <- ev:
		case <-done:
			onCancel()
		}
	}
}

// Submit queues a request and returns its stream. It fails at once with
// ErrBusy when the queue is full, ErrRateLimited when the tenant's token
// bucket is empty, ErrPromptTooLong, ErrNotFound for an unknown tenant, or
// an error matching ErrCancelled and ctx.Err() if ctx has already ended.
func (s *Scheduler) Submit(ctx context.Context, r Request) (*Stream, error) {
	defer runtime.KeepAlive(s)
	if err := ctx.Err(); err != nil {
		return nil, &cancelledError{err}
	}
	c := s.c
	var sp Sampling
	if r.Sampling != nil {
		sp = *r.Sampling
	} else {
		sp = DefaultSampling()
		sp.Temperature, sp.Seed, sp.Stop = r.Temperature, r.Seed, r.Stop
		sp.MaxTokens = r.MaxTokens
		if sp.MaxTokens <= 0 {
			sp.MaxTokens = -1
		}
	}
	var cp C.llms_sampling_params
	freeSampling := cSampling(sp, &cp)
	defer freeSampling()
	var prompt *C.char
	if r.Prompt != "" {
		prompt = C.CString(r.Prompt)
		defer C.free(unsafe.Pointer(prompt))
	}
	var toks *C.int32_t
	if len(r.Tokens) > 0 {
		toks = (*C.int32_t)(C.malloc(C.size_t(len(r.Tokens)) * 4))
		defer C.free(unsafe.Pointer(toks))
		copy(unsafe.Slice((*int32)(unsafe.Pointer(toks)), len(r.Tokens)), r.Tokens)
	}
	var tenant *C.char
	if r.Tenant != "" {
		tenant = C.CString(r.Tenant)
		defer C.free(unsafe.Pointer(tenant))
	}
	var deadline C.uint32_t
	if r.Timeout > 0 {
		ms := r.Timeout.Milliseconds()
		if ms < 1 {
			ms = 1
		}
		if ms > 1<<32-1 {
			ms = 1<<32 - 1
		}
		deadline = C.uint32_t(ms)
	}

	ch := make(chan StreamEvent)
	st := &Stream{Events: ch, ch: ch, sched: s, ctx: ctx, wake: make(chan struct{}, 1)}

	c.mu.RLock()
	if c.h == nil {
		c.mu.RUnlock()
		return nil, &Error{Status: ErrState.Status, Message: "scheduler is closed"}
	}
	// Registered under a tag before the submit, so that no event can come
	// before its stream exists.
	c.smu.Lock()
	c.nextTag++
	tag := c.nextTag
	c.streams[tag] = st
	c.smu.Unlock()
	var msg smsgBuf
	var id C.uint64_t
	rc := C.go_sched_submit(c.h, C.LLMS_REQUEST_MODEL_DEFAULTS, prompt, C.size_t(len(r.Prompt)), toks,
		C.size_t(len(r.Tokens)), &cp, tenant, C.int32_t(r.Priority), deadline, C.uint64_t(tag), &id, &msg[0])
	c.mu.RUnlock()
	if err := scheck(rc, &msg); err != nil {
		c.smu.Lock()
		delete(c.streams, tag)
		c.smu.Unlock()
		return nil, err
	}
	st.ID = uint64(id)
	go st.forward()
	return st, nil
}

// Tenant limits for SetTenant; zero fields mean no limit (Weight: 1).
type Tenant struct {
	Name            string // "" is the default tenant
	MaxConcurrent   uint32
	TokensPerMinute uint32 // prompt + generated tokens (token bucket)
	MaxPromptTokens uint32
	MaxOutputTokens uint32 // caps MaxTokens
	Weight          uint32 // share of compute against other tenants
	SharingGroup    string // prefix-cache group; "" = the tenant's own
}

// SetTenant registers or updates a tenant.
func (s *Scheduler) SetTenant(t Tenant) error {
	defer runtime.KeepAlive(s)
	c := s.c
	name := C.CString(t.Name)
	defer C.free(unsafe.Pointer(name))
	var group *C.char
	if t.SharingGroup != "" {
		group = C.CString(t.SharingGroup)
		defer C.free(unsafe.Pointer(group))
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == nil {
		return &Error{Status: ErrState.Status, Message: "scheduler is closed"}
	}
	var msg smsgBuf
	return scheck(C.go_sched_tenant(c.h, name, C.uint32_t(t.MaxConcurrent), C.uint32_t(t.TokensPerMinute),
		C.uint32_t(t.MaxPromptTokens), C.uint32_t(t.MaxOutputTokens), C.uint32_t(t.Weight), group, &msg[0]), &msg)
}

// MetricsPrometheus returns the scheduler's metrics in the Prometheus text
// exposition format.
func (s *Scheduler) MetricsPrometheus() (string, error) {
	defer runtime.KeepAlive(s)
	c := s.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == nil {
		return "", &Error{Status: ErrState.Status, Message: "scheduler is closed"}
	}
	size := C.size_t(16384)
	for try := 0; try < 4; try++ {
		buf := (*C.char)(C.malloc(size))
		var n C.size_t
		var msg smsgBuf
		st := C.go_sched_metrics(c.h, buf, size, &n, &msg[0])
		if st == C.LLMS_ERR_BUFFER_TOO_SMALL {
			C.free(unsafe.Pointer(buf))
			size = n + 1 + n/4 // metrics may grow between the calls
			continue
		}
		err := scheck(st, &msg)
		out := C.GoStringN(buf, C.int(n))
		C.free(unsafe.Pointer(buf))
		if err != nil {
			return "", err
		}
		return out, nil
	}
	return "", &Error{Status: -4}
}
