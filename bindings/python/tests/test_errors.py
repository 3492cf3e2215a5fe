import pytest

import llmserve


def test_missing_file_is_io_error(tmp_path):
    with pytest.raises(llmserve.LlmsIOError) as e:
        llmserve.Model(tmp_path / "missing.gguf")
    assert e.value.status == -3 == llmserve.Status.ERR_IO
    assert isinstance(e.value, OSError) and isinstance(e.value, llmserve.LlmsError)
    assert "LLMS_ERR_IO" in str(e.value)


def test_not_gguf_is_model_file_error(tmp_path):
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"NOPE" + bytes(64))
    with pytest.raises(llmserve.LlmsModelFileError) as e:
        llmserve.Model(p)
    assert e.value.status == llmserve.Status.ERR_GGUF_MAGIC


def test_truncated_file_has_detail(tmp_path, model_path):
    p = tmp_path / "cut.gguf"
    p.write_bytes(model_path.read_bytes()[:1000])
    with pytest.raises(llmserve.LlmsModelFileError) as e:
        llmserve.Model(p)
    assert e.value.status in range(-30, -19)
    assert e.value.message


def test_token_out_of_range(model):
    with model.session() as s:
        with pytest.raises(llmserve.LlmsTokenRangeError) as e:
            s.feed([1, model.n_vocab + 5])
        assert e.value.status == -50
        # Nothing was added and the session still works.
        assert s.n_tokens == 0 and s.usable


def test_prompt_too_long(model):
    with model.session(n_ctx=16) as s:
        with pytest.raises((llmserve.LlmsPromptTooLongError, llmserve.LlmsContextFullError)) as e:
            s.feed("the robot " * 40)
        assert e.value.status in (-51, -52)


def test_missing_metadata_key(model):
    with pytest.raises(llmserve.LlmsNotFoundError) as e:
        model.meta_int("no.such.key")
    assert e.value.status == -5 and isinstance(e.value, LookupError)


def test_wrong_metadata_type(model):
    with pytest.raises(llmserve.LlmsError) as e:
        model.meta_int("general.architecture")
    assert e.value.status == llmserve.Status.ERR_GGUF_TYPE


def test_invalid_sampling_argument(model):
    with model.session() as s:
        s.feed("The robot")
        with pytest.raises(llmserve.LlmsInvalidArgumentError) as e:
            s.generate(temperature=float("nan"))
        assert e.value.status == -1


def test_status_strings():
    assert llmserve.status_string(-51).startswith("LLMS_ERR_CONTEXT_FULL")
    assert llmserve.error_class(-25) is llmserve.LlmsModelFileError
    assert llmserve.error_class(-71) is llmserve.LlmsBackendError
    assert llmserve.error_class(-999) is llmserve.LlmsError
