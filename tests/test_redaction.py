"""The secret registry behind ``redact``: reference-counted, bounded, rebuilt lazily."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from trio_tts._core import errors
from trio_tts._core.errors import MAX_SECRETS, SecretRegistry


def test_ten_thousand_distinct_keys_stay_bounded_and_the_newest_are_redacted() -> None:
    secrets = SecretRegistry()
    keys = [f"sk-distinct-key-{n:05d}" for n in range(10_000)]
    for key in keys:
        secrets.register(key)
    stats = secrets.statistics()
    assert (stats.secrets, stats.references) == (MAX_SECRETS, MAX_SECRETS)
    assert stats.evicted == 10_000 - MAX_SECRETS
    assert stats.pattern_builds == 0  # nothing redacted yet: nothing compiled
    newest, oldest_kept, evicted = keys[-1], keys[-MAX_SECRETS], keys[-MAX_SECRETS - 1]
    assert secrets.redact(f"a {newest} b {oldest_kept}") == "a *** b ***"
    assert secrets.redact(evicted) == evicted
    assert secrets.statistics().pattern_builds == 1  # once, lazily, for 10,000 registrations
    assert secrets.redact(newest) == "***"
    assert secrets.statistics().pattern_builds == 1  # no change since: no rebuild


def test_a_registered_key_is_redacted_in_every_form() -> None:
    secrets = SecretRegistry()
    key = "c2stU0VDUkVUOnNlY3JldC8rPQ=="
    secrets.register(key)
    for form in (
        key,
        base64.b64encode(key.encode()).decode(),
        urllib.parse.quote(key, safe=""),
        urllib.parse.quote_plus(key),
    ):
        assert secrets.redact(f"echo: {form}!") == "echo: ***!"
    assert secrets.redact("abc") == "abc"
    secrets.register("abc")  # too short to be a key: ignored
    assert secrets.statistics().secrets == 1


def test_unregistering_drops_the_count_after_the_last_reference() -> None:
    secrets = SecretRegistry()
    secrets.register("key-one-1234")
    secrets.register("key-one-1234")  # a second owner of the same key
    secrets.register("key-two-5678")
    assert (secrets.statistics().secrets, secrets.statistics().references) == (2, 3)
    secrets.unregister("key-one-1234")
    assert secrets.statistics().secrets == 2
    assert secrets.redact("key-one-1234") == "***"  # the other owner still holds it
    secrets.unregister("key-one-1234")
    assert (secrets.statistics().secrets, secrets.statistics().references) == (1, 1)
    assert secrets.redact("key-one-1234 key-two-5678") == "key-one-1234 ***"
    secrets.unregister("never-registered")  # ignored
    secrets.unregister("key-two-5678")
    assert secrets.statistics().secrets == 0
    assert secrets.redact("key-two-5678") == "key-two-5678"


def test_registered_holds_the_secret_for_the_block() -> None:
    secrets = SecretRegistry(capacity=2)
    with secrets.registered("block-secret"):
        assert secrets.redact("x block-secret") == "x ***"
        assert repr(secrets) == "<SecretRegistry secrets=1/2 references=1>"
    assert secrets.redact("x block-secret") == "x block-secret"
    with pytest.raises(ValueError, match=r"^capacity must be positive$"):
        SecretRegistry(capacity=0)


def test_the_module_functions_share_one_registry() -> None:
    key = "module-level-key-42"
    before = errors.SECRETS.statistics().secrets
    errors.register_api_key(key)
    assert errors.redact(f"[{key}]") == "[***]"
    assert errors.SECRETS.statistics().secrets == min(before + 1, MAX_SECRETS)
    errors.unregister_api_key(key)
    errors.unregister_api_key(None)
    assert errors.SECRETS.statistics().secrets == min(before, MAX_SECRETS - 1)
    assert errors.redact(f"[{key}]") == f"[{key}]"
    with errors.registered_secret(key):
        assert errors.redact(key) == "***"
    assert errors.redact(key) == key
    with pytest.raises(errors.InvalidOptions):
        errors.register_api_key("  ")
