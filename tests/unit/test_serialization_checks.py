"""System checks of the serializer, signing, compression and payload settings (djtasks.E2xx)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from djtasks import serialization
from djtasks.checks import check_message_settings


def ids(settings: Any = None) -> dict[str, str]:
    return {e.id: e.msg for e in check_message_settings()}


def test_defaults_pass() -> None:
    assert ids() == {}


def test_pickle_needs_signing(settings: Any) -> None:
    settings.DJTASKS_ACCEPT_CONTENT = ["json", "pickle"]
    assert "pickle is accepted or used" in ids()["djtasks.E204"]
    settings.DJTASKS_SIGN_MESSAGES = True
    assert ids() == {}


@pytest.mark.parametrize("setting", ["DJTASKS_TASK_SERIALIZER", "DJTASKS_RESULT_SERIALIZER"])
def test_pickle_as_a_serializer_needs_signing_too(settings: Any, setting: str) -> None:
    settings.DJTASKS_ACCEPT_CONTENT = ["json", "application/x-python-serialize"]
    settings.DJTASKS_SIGN_MESSAGES = True
    setattr(settings, setting, "pickle")
    assert ids() == {}
    settings.DJTASKS_SIGN_MESSAGES = False
    assert "djtasks.E204" in ids()


def test_unknown_accept_content(settings: Any) -> None:
    settings.DJTASKS_ACCEPT_CONTENT = ["json", "toml"]
    assert ids()["djtasks.E202"] == (
        "DJTASKS_ACCEPT_CONTENT: 'toml' is not a serializer (known: json, msgpack, pickle, yaml)"
    )


def test_accepted_serializer_whose_package_is_missing(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    monkeypatch.setattr(serialization, "_INSTALLED", set())
    settings.DJTASKS_ACCEPT_CONTENT = ["json", "msgpack"]
    assert "pip install 'djtasks[msgpack]'" in ids()["djtasks.E203"]


def test_serializer_that_workers_do_not_accept_is_a_warning(settings: Any) -> None:
    settings.DJTASKS_TASK_SERIALIZER = "yaml"
    assert "workers will refuse tasks sent with it" in ids()["djtasks.W201"]


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("DJTASKS_SIGN_MESSAGES", "yes", "djtasks.E201"),
        ("DJTASKS_COMPRESSION", "lzma", "djtasks.E205"),
        ("DJTASKS_COMPRESSION_THRESHOLD", -1, "djtasks.E206"),
        ("DJTASKS_COMPRESSION_THRESHOLD", 1.5, "djtasks.E206"),
        ("DJTASKS_MAX_PAYLOAD_BYTES", 0, "djtasks.E206"),
        ("DJTASKS_MAX_PAYLOAD_BYTES", True, "djtasks.E206"),
        ("DJTASKS_SIGNING_KEY", "", "djtasks.E207"),
        ("DJTASKS_SIGNING_KEY_FALLBACKS", "old-key", "djtasks.E208"),
    ],
)
def test_bad_values(settings: Any, name: str, value: Any, error: str) -> None:
    setattr(settings, name, value)
    assert error in ids()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJTASKS_COMPRESSION", "bzip2"),
        ("DJTASKS_COMPRESSION_THRESHOLD", 0),
        ("DJTASKS_MAX_PAYLOAD_BYTES", None),
        ("DJTASKS_SIGNING_KEY", "k"),
        ("DJTASKS_SIGNING_KEY_FALLBACKS", ["old"]),
    ],
)
def test_good_values(settings: Any, name: str, value: Any) -> None:
    setattr(settings, name, value)
    assert ids() == {}


def test_new_settings_are_known_settings(settings: Any) -> None:
    from djtasks.checks import check_settings

    settings.DJTASKS_SIGN_MESSAGES = False
    settings.DJTASKS_MAX_PAYLOAD_BYTES = 10
    assert not [e for e in check_settings() if e.id == "djtasks.W001"]
