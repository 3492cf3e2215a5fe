import threading

import llmserve
from conftest import golden


def test_concurrent_sessions_share_a_model(model_path):
    ref = golden("The robot")["completion"]
    n_threads, rounds = 4, 3
    results, errors = [], []
    with llmserve.Model(model_path, n_threads=2) as model:
        start = threading.Barrier(n_threads)

        def worker():
            try:
                start.wait()
                for _ in range(rounds):
                    with model.session() as s:
                        results.append("".join(s.stream("The robot", max_tokens=90, temperature=0)))
            except Exception as e:  # reported below, in the main thread
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert results == [ref] * (n_threads * rounds)


def test_errors_are_per_thread(model_path, tmp_path):
    # llms_errmsg() is per OS thread: each thread sees its own failure's detail.
    msgs = {}

    def fail(i):
        try:
            llmserve.Model(tmp_path / ("missing-%d.gguf" % i))
        except llmserve.LlmsIOError as e:
            msgs[i] = e.message

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(msgs) == 4
    for i, m in msgs.items():
        assert "missing-%d" % i in m
