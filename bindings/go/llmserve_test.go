package llmserve

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func fixtures(t *testing.T) string {
	dir := os.Getenv("LLMS_FIXTURES")
	if dir == "" {
		dir = "../../../shared/fixtures"
	}
	if _, err := os.Stat(filepath.Join(dir, "models", "aidreams260K.gguf")); err != nil {
		t.Skip("fixture model missing (set LLMS_FIXTURES)")
	}
	return dir
}

// The C library's greedy completion of "The robot" (90 tokens).
func golden(t *testing.T) string {
	raw, err := os.ReadFile(filepath.Join(fixtures(t), "models", "aidreams260K.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []struct{ Prompt, Completion string }
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	for _, c := range g.Cases {
		if c.Prompt == "The robot" {
			return c.Completion
		}
	}
	t.Fatal("golden case missing")
	return ""
}

func load(t *testing.T) *Model {
	m, err := Load(filepath.Join(fixtures(t), "models", "aidreams260K.gguf"), ContextOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

func TestGenerateMatchesC(t *testing.T) {
	want := golden(t)
	m := load(t)
	s, err := m.NewSession(0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, fin, err := s.Generate(context.Background(), "The robot", Greedy(90))
	if err != nil || got != want || fin != FinishLength {
		t.Fatalf("got %q %v %v, want %q", got, fin, err, want)
	}
}

func TestStreamJoinsToSameText(t *testing.T) {
	want := golden(t)
	m := load(t)
	s, _ := m.NewSession(0)
	defer s.Close()
	ch, err := s.Stream(context.Background(), "The robot", Greedy(90))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	n, done := 0, 0
	for ev := range ch {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		b.WriteString(ev.Text)
		n++
		if ev.Done {
			done++
			if ev.FinishReason != FinishLength {
				t.Errorf("finish %v", ev.FinishReason)
			}
		}
	}
	if b.String() != want || done != 1 || n < 10 {
		t.Fatalf("got %q (%d events, %d done)", b.String(), n, done)
	}
}

func TestCancellation(t *testing.T) {
	m := load(t)
	s, _ := m.NewSession(0)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.Stream(ctx, "The robot", Greedy(-1))
	if err != nil {
		t.Fatal(err)
	}
	var last Event
	i := 0
	for ev := range ch {
		if i++; i == 3 {
			cancel()
		}
		last = ev
	}
	if !last.Done || !errors.Is(last.Err, ErrCancelled) || !errors.Is(last.Err, context.Canceled) {
		t.Fatalf("last event %+v", last)
	}
	// A deadline that has passed cancels Generate before any token.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel2()
	time.Sleep(time.Millisecond)
	_ = s.Reset()
	_, fin, err := s.Generate(ctx2, "The robot", Greedy(90))
	if fin != FinishCancelled || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fin %v err %v", fin, err)
	}
}

func TestErrorsCarryStatus(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.gguf"), ContextOptions{Threads: 1})
	var e *Error
	if !errors.As(err, &e) || e.Status != -3 || !errors.Is(err, ErrIO) || !strings.Contains(e.Message, "missing.gguf") {
		t.Fatalf("err %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	os.WriteFile(bad, make([]byte, 64), 0o644)
	if _, err := Load(bad, ContextOptions{Threads: 1}); !errors.Is(err, ErrGGUFMagic) {
		t.Fatalf("err %v", err)
	}
	m := load(t)
	s, _ := m.NewSession(0)
	if err := s.FeedTokens([]int32{1, 100000}); !errors.Is(err, ErrTokenRange) {
		t.Fatalf("err %v", err)
	}
	if _, err := m.MetaInt("no.such.key"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err %v", err)
	}
	if _, err := m.ApplyChatTemplate([]Message{{"user", "hi"}}, true, ""); !errors.Is(err, ErrTemplate) {
		t.Fatalf("err %v", err)
	}
	// A model with an open session refuses to close.
	if err := m.Close(); !errors.Is(err, ErrState) {
		t.Fatalf("close with a session open: %v", err)
	}
	s.Close()
	s.Close()
}

func TestModelAPI(t *testing.T) {
	m := load(t)
	info, err := m.Info()
	if err != nil || info.Architecture != "llama" || info.Vocab != 512 {
		t.Fatalf("%+v %v", info, err)
	}
	if a, err := m.MetaString("general.architecture"); a != "llama" || err != nil {
		t.Fatal(a, err)
	}
	toks, err := m.Tokenize("The robot", 0)
	if err != nil {
		t.Fatal(err)
	}
	if txt, err := m.Detokenize(toks); txt != "The robot" || err != nil {
		t.Fatal(txt, err)
	}
	if _, ok := m.ChatTemplate(); ok {
		t.Fatal("fixture has no chat template")
	}
	out, err := m.ApplyChatTemplate([]Message{{"user", "hi"}}, true, "chatml")
	if err != nil || !strings.HasPrefix(out, "<|im_start|>user\nhi<|im_end|>") {
		t.Fatal(out, err)
	}
	s, _ := m.NewSession(0)
	defer s.Close()
	s.Feed("The robot")
	f, err := s.Fork()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _, _ := f.Generate(context.Background(), "", Greedy(90))
	if got != golden(t) {
		t.Fatalf("fork: %q", got)
	}
	stop, fin, _ := s.Generate(context.Background(), "", func() Sampling { p := Greedy(90); p.Stop = []string{"Contrast"}; return p }())
	if fin != FinishStop || !strings.HasPrefix(golden(t), stop) || strings.Contains(stop, "Contrast") {
		t.Fatalf("stop: %q %v", stop, fin)
	}
}

func TestConcurrentSessions(t *testing.T) {
	want := golden(t)
	m := load(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < 3; r++ {
				s, err := m.NewSession(0)
				if err != nil {
					errs <- err
					return
				}
				var got string
				if g%2 == 0 {
					got, _, err = s.Generate(context.Background(), "The robot", Greedy(90))
				} else {
					var ch <-chan Event
					ch, err = s.Stream(context.Background(), "The robot", Greedy(90))
					for ev := range ch {
						got += ev.Text
						if ev.Err != nil {
							err = ev.Err
						}
					}
				}
				s.Close()
				if err != nil {
					errs <- err
				} else if got != want {
					errs <- errors.New("goroutine output differs: " + got)
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Finalizers release unclosed sessions and models without crashing: a
// session keeps its model reachable, so the model's finalizer runs later.
func TestFinalizers(t *testing.T) {
	path := filepath.Join(fixtures(t), "models", "aidreams260K.gguf")
	for i := 0; i < 5; i++ {
		m, err := Load(path, ContextOptions{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := m.NewSession(0)
		s.Generate(context.Background(), "The robot", Greedy(4))
	}
	for i := 0; i < 5; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
