package llmserve

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// longRun generates until a 4096-token context is full (with NCtx 4096),
// long enough for a cancel or a Close to land first.
func longRun() *Sampling {
	p := Greedy(-1)
	p.IgnoreEOG = true
	return &p
}

func newSched(t *testing.T, m *Model, opts SchedulerOptions) *Scheduler {
	s, err := NewScheduler(m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// collect drains a stream: the joined text, the final event and the count
// of final events.
func collect(st *Stream) (string, StreamEvent, int) {
	var b strings.Builder
	var last StreamEvent
	n := 0
	for ev := range st.Events {
		b.WriteString(ev.Text)
		if ev.Done {
			n++
			last = ev
		}
	}
	return b.String(), last, n
}

func sessionText(t *testing.T, m *Model, prompt string, n int32) string {
	s, err := m.NewSession(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _, err := s.Generate(context.Background(), prompt, Greedy(n))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestSchedulerMatchesSession(t *testing.T) {
	want := golden(t)
	m := load(t)
	if s := sessionText(t, m, "The robot", 90); s != want {
		t.Fatalf("session %q", s)
	}
	for _, det := range []bool{false, true} {
		s := newSched(t, m, SchedulerOptions{Deterministic: det})
		st, err := s.Submit(context.Background(), Request{Prompt: "The robot", MaxTokens: 90})
		if err != nil {
			t.Fatal(err)
		}
		got, last, n := collect(st)
		if got != want || n != 1 || last.FinishReason != FinishLength || last.Err != nil {
			t.Fatalf("deterministic=%v: got %q, final %+v (%d)", det, got, last, n)
		}
		if last.Usage.CompletionTokens != 90 || last.Usage.PromptTokens == 0 {
			t.Fatalf("usage %+v", last.Usage)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSchedulerConcurrent(t *testing.T) {
	m := load(t)
	prompts := []string{"The robot", "Once upon a time", "The cat sat", "A little girl"}
	wants := map[string]string{}
	for i, p := range prompts {
		wants[p] = sessionText(t, m, p, int32(20+i*7))
	}
	s := newSched(t, m, SchedulerOptions{Deterministic: true, MaxBatchTokens: 64})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			i := g % len(prompts)
			st, err := s.Submit(context.Background(), Request{Prompt: prompts[i], MaxTokens: int32(20 + i*7), Priority: int32(g % 3)})
			if err != nil {
				errs <- err
				return
			}
			got, last, n := collect(st)
			if n != 1 || got != wants[prompts[i]] || last.Err != nil {
				errs <- fmt.Errorf("goroutine %d: %d final events, %q (want %q), %v", g, n, got, wants[prompts[i]], last.Err)
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	metrics, err := s.MetricsPrometheus()
	if err != nil || !strings.Contains(metrics, "# TYPE") {
		t.Fatalf("metrics %v %q", err, metrics)
	}
}

func TestSchedulerCancel(t *testing.T) {
	m := load(t)
	s := newSched(t, m, SchedulerOptions{NCtx: 4096})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := s.Submit(ctx, Request{Prompt: "The robot", Sampling: longRun()})
	if err != nil {
		t.Fatal(err)
	}
	var last StreamEvent
	i, done := 0, 0
	for ev := range st.Events {
		if i++; i == 3 {
			cancel()
		}
		if ev.Done {
			done++
		}
		last = ev
	}
	if done != 1 || last.FinishReason != FinishCancelled || !errors.Is(last.Err, ErrCancelled) || !errors.Is(last.Err, context.Canceled) {
		t.Fatalf("last %+v (%d done)", last, done)
	}
	// A request deadline ends it with FinishTimeout.
	st, err = s.Submit(context.Background(), Request{Prompt: "The robot", Sampling: longRun(), Timeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, last, n := collect(st); n != 1 || last.FinishReason != FinishTimeout || !errors.Is(last.Err, ErrTimeout) {
		t.Fatalf("timeout: %+v", last)
	}
	// An ended context refuses the submit.
	if _, err := s.Submit(ctx, Request{Prompt: "The robot"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	// The scheduler still works afterwards.
	st, err = s.Submit(context.Background(), Request{Prompt: "The robot", MaxTokens: 90})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, n := collect(st); got != golden(t) || n != 1 {
		t.Fatalf("after cancel: %q", got)
	}
}

func TestSchedulerBusyAndRateLimit(t *testing.T) {
	m := load(t)
	s := newSched(t, m, SchedulerOptions{MaxRunning: 1, QueueCapacity: 1, NCtx: 4096})
	long := Request{Prompt: "The robot", Sampling: longRun()}
	ctx, cancel := context.WithCancel(context.Background())
	var streams []*Stream
	var busy error
	for i := 0; i < 20 && busy == nil; i++ {
		st, err := s.Submit(ctx, long)
		if err != nil {
			busy = err
			break
		}
		streams = append(streams, st)
	}
	if !errors.Is(busy, ErrBusy) || errors.Is(busy, ErrRateLimited) {
		t.Fatalf("err %v after %d submits", busy, len(streams))
	}
	cancel()
	for _, st := range streams {
		if _, last, n := collect(st); n != 1 || last.FinishReason != FinishCancelled {
			t.Fatalf("final %+v", last)
		}
	}

	if err := s.SetTenant(Tenant{Name: "small", TokensPerMinute: 1}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Submit(context.Background(), Request{Prompt: "The robot", MaxTokens: 2, Tenant: "small"})
	if err != nil {
		t.Fatal(err)
	}
	collect(st)
	if _, err := s.Submit(context.Background(), Request{Prompt: "The robot", MaxTokens: 2, Tenant: "small"}); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err %v", err)
	}
	if _, err := s.Submit(context.Background(), Request{Prompt: "The robot", Tenant: "nobody"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err %v", err)
	}
	metrics, err := s.MetricsPrometheus()
	if err != nil || !strings.Contains(metrics, "small") {
		t.Fatalf("metrics %v", err)
	}
}

func TestSchedulerClose(t *testing.T) {
	m := load(t)
	s, err := NewScheduler(m, SchedulerOptions{NCtx: 4096})
	if err != nil {
		t.Fatal(err)
	}
	// The model refuses to close under an open scheduler.
	if err := m.Close(); !errors.Is(err, ErrState) {
		t.Fatalf("model close: %v", err)
	}
	st, err := s.Submit(context.Background(), Request{Prompt: "The robot", Sampling: longRun()})
	if err != nil {
		t.Fatal(err)
	}
	<-st.Events
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.Close() }()
	}
	wg.Wait()
	if _, last, n := collect(st); n != 1 || last.FinishReason != FinishCancelled || !errors.Is(last.Err, ErrCancelled) {
		t.Fatalf("final %+v", last)
	}
	if _, err := s.Submit(context.Background(), Request{Prompt: "x"}); !errors.Is(err, ErrState) {
		t.Fatalf("submit after close: %v", err)
	}
	if _, err := s.MetricsPrometheus(); !errors.Is(err, ErrState) {
		t.Fatal(err)
	}
	s.Close()
}

// An unreferenced scheduler is finalized: the dispatcher stops and the
// model can then be finalized too.
func TestSchedulerFinalizer(t *testing.T) {
	path := filepath.Join(fixtures(t), "models", "aidreams260K.gguf")
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		m, err := Load(path, ContextOptions{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewScheduler(m, SchedulerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := s.Submit(context.Background(), Request{Prompt: "The robot", MaxTokens: 4})
		collect(st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		if runtime.NumGoroutine() <= before {
			return
		}
	}
	t.Fatalf("dispatchers still running: %d goroutines, %d before", runtime.NumGoroutine(), before)
}
