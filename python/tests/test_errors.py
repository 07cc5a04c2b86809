import re

from conftest import REPOSITORY

from smqtt.errors import ERROR_CODES, SmqttError


def test_codes_are_exactly_those_of_docs_errors_md() -> None:
    text = (REPOSITORY / "docs" / "errors.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `(ERR_[A-Z0-9_]+)`", text, flags=re.MULTILINE)
    assert len(documented) == len(set(documented))
    assert sorted(documented) == sorted(ERROR_CODES)


def test_smqtt_error_carries_its_code() -> None:
    err = SmqttError("ERR_REPLAY", "seen")
    assert err.code == "ERR_REPLAY" and str(err) == "seen"
    assert isinstance(err, Exception)


def test_unknown_codes_are_a_programming_error() -> None:
    try:
        SmqttError("ERR_NOPE")  # type: ignore[arg-type]
    except ValueError:
        return
    raise AssertionError("expected ValueError")
