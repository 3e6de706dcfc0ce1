"""Signed payloads: what the signature covers, what is refused, and key rotation."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from djtasks import message_signing, serialization
from djtasks.serialization import BadSignature

SIGNED_JSON = "application/json; hmac=sha256"


@pytest.fixture(autouse=True)
def signing(settings: Any) -> None:
    settings.DJTASKS_SIGN_MESSAGES = True
    settings.DJTASKS_ACCEPT_CONTENT = ["json", "pickle"]
    settings.SECRET_KEY = "current-secret"
    settings.SECRET_KEY_FALLBACKS = []


def signed(
    *args: Any,
    name: str = "app.pay",
    serializer: str = "json",
    compression: str | None = None,
    **kwargs: Any,
) -> tuple[str, str]:
    return serialization.encode_arguments(name, args, kwargs, serializer, compression)


def decode(content_type: str, text: str, name: str = "app.pay") -> Any:
    return serialization.decode_arguments(content_type, text, task_name=name)


def test_stored_form_is_signature_colon_payload() -> None:
    content_type, text = signed(10, to="bob")
    assert content_type == SIGNED_JSON
    signature, _, body = text.partition(":")
    assert len(signature) == message_signing.SIGNATURE_LENGTH
    assert body == '[[10],{"to":"bob"}]'
    assert decode(content_type, text) == ([10], {"to": "bob"})


@pytest.mark.parametrize(
    ("serializer", "compression"),
    [
        ("json", None),
        ("json", "zlib"),
        ("json", "bzip2"),
        ("pickle", None),
        ("pickle", "zlib"),
    ],
)
def test_every_format_verifies(serializer: str, compression: str | None) -> None:
    content_type, text = signed(10, serializer=serializer, compression=compression)
    assert content_type.endswith("; hmac=sha256")
    assert decode(content_type, text) == ([10], {})


# -- what the signature covers ---------------------------------------------------------


def test_a_changed_payload_is_refused() -> None:
    content_type, text = signed(10, to="bob")
    with pytest.raises(BadSignature, match=r"signature does not verify for task 'app\.pay'"):
        decode(content_type, text.replace("bob", "eve"))


def test_a_payload_moved_to_another_task_is_refused() -> None:
    content_type, text = signed(10, name="app.harmless")
    with pytest.raises(BadSignature, match=r"does not verify for task 'app\.pay'"):
        decode(content_type, text, name="app.pay")


def test_a_changed_content_type_is_refused() -> None:
    content_type, text = signed(10, compression="zlib")
    with pytest.raises(BadSignature, match="does not verify"):
        decode(content_type.replace("zlib", "bzip2"), text)


def test_a_changed_encoding_is_refused() -> None:
    # The same bytes read as another serializer: the content type is signed too.
    content_type, text = signed(10, serializer="pickle")
    with pytest.raises(BadSignature, match="does not verify"):
        decode(content_type.replace("x-python-serialize", "json"), text)


def test_a_result_signature_does_not_pass_for_arguments() -> None:
    content_type, text = serialization.encode([[1], {}], "json")
    assert content_type == SIGNED_JSON
    with pytest.raises(BadSignature):
        decode(content_type, text)


def test_an_unsigned_payload_is_refused_while_signing_is_on() -> None:
    with pytest.raises(
        BadSignature, match="not signed, and DJTASKS_SIGN_MESSAGES = True requires a signature"
    ):
        decode("application/json", "[[10],{}]")


def test_a_signed_content_type_without_signature_is_refused() -> None:
    with pytest.raises(BadSignature, match="has no signature"):
        decode(SIGNED_JSON, "[[10],{}]")


@pytest.mark.parametrize("signature", ["", "x" * 43, "x" * 42, "ÿ" * 43])
def test_garbage_signatures_are_refused(signature: str) -> None:
    _, text = signed(10)
    with pytest.raises(BadSignature):
        decode(SIGNED_JSON, signature + ":" + text.partition(":")[2])


def test_signatures_are_still_checked_after_signing_is_turned_off(settings: Any) -> None:
    content_type, text = signed(10)
    settings.DJTASKS_SIGN_MESSAGES = False
    assert decode(content_type, text) == ([10], {})
    assert decode("application/json", "[[10],{}]") == ([10], {})  # unsigned is fine now
    with pytest.raises(BadSignature):
        decode(content_type, text.replace("10", "11"))


def test_showing_a_row_does_not_need_the_task_name() -> None:
    # The admin shows arguments of safe serializers without verifying them.
    content_type, text = signed(10, compression="zlib")
    assert serialization.decode_arguments(content_type, text) == ([10], {})


# -- keys ----------------------------------------------------------------------------


def test_rotation_through_secret_key_fallbacks(settings: Any) -> None:
    content_type, text = signed(10)
    settings.SECRET_KEY = "new-secret"
    with pytest.raises(BadSignature, match="neither DJTASKS_SIGNING_KEY / SECRET_KEY nor"):
        decode(content_type, text)
    settings.SECRET_KEY_FALLBACKS = ["current-secret"]
    assert decode(content_type, text) == ([10], {})
    # New payloads are signed with the new key.
    new_type, new_text = signed(10)
    settings.SECRET_KEY_FALLBACKS = []
    assert decode(new_type, new_text) == ([10], {})


def test_a_signing_key_of_its_own_with_fallbacks(settings: Any) -> None:
    settings.DJTASKS_SIGNING_KEY = "queue-key-1"
    content_type, text = signed(10)
    settings.SECRET_KEY = "anything"  # no longer involved
    assert decode(content_type, text) == ([10], {})
    settings.DJTASKS_SIGNING_KEY = "queue-key-2"
    with pytest.raises(BadSignature):
        decode(content_type, text)
    settings.DJTASKS_SIGNING_KEY_FALLBACKS = ["queue-key-1"]
    assert decode(content_type, text) == ([10], {})


def test_signatures_are_django_salted_hmacs() -> None:
    import base64

    from django.utils.crypto import salted_hmac

    content_type, text = signed(10)
    signature, _, body = text.partition(":")
    message = message_signing._message("args", "app.pay", content_type, body)
    expected = salted_hmac(
        message_signing._SALT, message, secret="current-secret", algorithm="sha256"
    ).digest()
    assert signature == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()


def test_the_key_is_derived_not_the_secret_key_itself() -> None:
    import base64
    import hashlib
    import hmac

    content_type, text = signed(10)
    signature, _, body = text.partition(":")
    message = message_signing._message("args", "app.pay", content_type, body)
    naive = (
        base64.urlsafe_b64encode(
            hmac.new(b"current-secret", message.encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    assert signature != naive


# -- results and retries -------------------------------------------------------------


def test_results_are_signed_and_verified() -> None:
    content_type, text = serialization.encode({"paid": 10}, "json")
    assert content_type == SIGNED_JSON
    assert serialization.decode(content_type, text) == {"paid": 10}
    with pytest.raises(BadSignature, match="does not verify for this result"):
        serialization.decode(content_type, text.replace("10", "99"))


def test_pickle_results_need_a_signature() -> None:
    import base64
    import pickle

    content_type, text = serialization.encode({"x": (1, 2)}, "pickle")
    assert serialization.decode(content_type, text) == {"x": (1, 2)}
    with pytest.raises(BadSignature):
        serialization.decode(
            "application/x-python-serialize", base64.b64encode(pickle.dumps(1)).decode()
        )


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_retry_arguments_keep_the_content_type_and_are_signed(compression: str | None) -> None:
    content_type, _ = signed(1, compression=compression)
    with override_settings(DJTASKS_COMPRESSION_THRESHOLD=0):  # the row's format wins
        text = serialization.reencode_arguments("app.pay", content_type, [2], {"k": 3})
    assert decode(content_type, text) == ([2], {"k": 3})
