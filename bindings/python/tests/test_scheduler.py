import asyncio
import threading

import pytest

import llmserve

PROMPT = "The robot"


@pytest.fixture(scope="module")
def greedy(model):
    with model.session() as s:
        return s.generate(PROMPT, max_tokens=40, temperature=0)


def test_greedy_matches_session(model, greedy):
    with llmserve.Scheduler(model, deterministic=True) as sched:
        req = sched.submit(PROMPT, max_tokens=40, temperature=0)
        assert req.id != 0
        pieces = list(req)
        r = req.result(timeout=60)
    assert "".join(pieces) == r.text == greedy
    assert r.finish_reason in ("length", "eog")
    assert r.usage["prompt_tokens"] > 0
    assert 0 < r.usage["completion_tokens"] <= 40


def test_concurrent_submit(model, greedy):
    n_threads, per_thread = 8, 2
    results, errors = [], []
    lock = threading.Lock()
    with llmserve.Scheduler(model, deterministic=True, max_batch_tokens=128) as sched:
        start = threading.Barrier(n_threads)

        def worker():
            try:
                start.wait()
                reqs = [sched.submit(PROMPT, max_tokens=40, temperature=0)
                        for _ in range(per_thread)]
                for req in reqs:
                    r = req.result(timeout=120)
                    with lock:
                        results.append((req.id, r.text))
            except Exception as e:  # reported in the main thread
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(results) == n_threads * per_thread
    assert len({rid for rid, _ in results}) == len(results)  # one result per request
    assert all(text == greedy for _, text in results)


# The fixture's context is 128 tokens, generated in milliseconds; requests
# meant to be cancelled run in a 4096-token context to stay alive meanwhile.
LONG_CTX = 4096


def test_cancel(model):
    with llmserve.Scheduler(model, n_ctx=LONG_CTX) as sched:
        req = sched.submit(PROMPT, max_tokens=100000, temperature=0, ignore_eog=True)
        next(iter(req))  # it is running
        assert req.cancel()
        r = req.result(timeout=60)
        assert r.finish_reason == "cancelled"
        assert r.status == llmserve.Status.ERR_CANCELLED
        assert not req.cancel()  # already ended
        # Cancelled before it ever ran.
        req = sched.submit(PROMPT, max_tokens=100000, temperature=0, ignore_eog=True)
        req.cancel()
        assert req.result(timeout=60).finish_reason in ("cancelled", "context_full")


def test_full_queue_is_busy(model):
    with llmserve.Scheduler(model, queue_capacity=1, max_running=1, n_ctx=LONG_CTX) as sched:
        reqs = []
        with pytest.raises(llmserve.LlmsBusyError) as ei:
            for _ in range(64):
                reqs.append(sched.submit(PROMPT, max_tokens=100000, temperature=0, ignore_eog=True))
        assert ei.value.status == llmserve.Status.ERR_BUSY
        assert isinstance(ei.value, llmserve.LlmsRequestError)
        for req in reqs:
            req.cancel()
        for req in reqs:
            assert req.result(timeout=60).finish_reason in ("cancelled", "context_full")


def test_rate_limited(model):
    with llmserve.Scheduler(model) as sched:
        sched.set_tenant("small", tokens_per_minute=1)
        with pytest.raises((llmserve.LlmsRateLimitedError, llmserve.LlmsPromptTooLongError)):
            for _ in range(8):
                sched.submit(PROMPT, max_tokens=4, temperature=0, tenant="small").result(timeout=60)
        with pytest.raises(llmserve.LlmsNotFoundError):
            sched.submit(PROMPT, tenant="nobody")


def test_astream(model, greedy):
    with llmserve.Scheduler(model, deterministic=True) as sched:
        async def main():
            reqs = [sched.submit(PROMPT, max_tokens=40, temperature=0) for _ in range(3)]

            async def collect(req):
                return "".join([p async for p in req.astream()])

            texts = await asyncio.gather(*(collect(r) for r in reqs))
            last = await reqs[0].aresult()
            return texts, last

        texts, last = asyncio.run(main())
    assert texts == [greedy] * 3
    assert last.text == greedy


def test_stop_and_metrics(model, greedy):
    with llmserve.Scheduler(model) as sched:
        word = greedy.split()[2]
        r = sched.submit(PROMPT, max_tokens=40, temperature=0, stop=word).result(timeout=60)
        assert r.finish_reason == "stop"
        assert word not in r.text
        text = sched.metrics_prometheus()
        stats = sched.stats()
    assert "llms_" in text
    assert any(line.startswith("llms_") for line in text.splitlines())
    assert stats["requests_submitted"] >= 1


def test_close_ends_pending_requests(model):
    sched = llmserve.Scheduler(model, n_ctx=LONG_CTX)
    req = sched.submit(PROMPT, max_tokens=100000, temperature=0, ignore_eog=True)
    sched.close()
    sched.close()  # idempotent
    assert req.result(timeout=10).finish_reason == "cancelled"
    with pytest.raises(ValueError):
        sched.submit(PROMPT)
