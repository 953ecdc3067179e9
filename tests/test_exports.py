"""``trio_tts`` is the only public surface: everything it exports is documented and real."""

from __future__ import annotations

import importlib
import inspect

import trio_tts


def test_every_public_name_is_reexported_from_a_private_module() -> None:
    # (pytest's assertion rewriting adds "@py_builtins"-style names: not identifiers.)
    public = [n for n in dir(trio_tts) if not n.startswith("_") and n.isidentifier()]
    assert "open_pool" in public and "Pool" in public and "InworldProvider" in public
    for name in public:
        obj = getattr(trio_tts, name)
        if inspect.ismodule(obj):
            assert name in ("providers", "server", "testing", "http", "cli", "fleet", "otel"), name
            continue
        if name == "__version__":
            continue
        module = getattr(obj, "__module__", "")
        assert module.startswith("trio_tts."), (name, module)
        # Defined in the private core or a provider package, never in a public module.
        allowed = ("trio_tts._core.", "trio_tts.providers.", "trio_tts.fleet.")
        assert module.startswith(allowed), (name, module)
        assert obj.__doc__, f"{name} has no docstring"


def test_private_modules_do_not_leak_names_through_all() -> None:
    for mod in ("pool", "context", "errors", "options", "events", "quota", "text"):
        module = importlib.import_module(f"trio_tts._core.{mod}")
        for name in getattr(module, "__all__", []):
            assert not name.startswith("_"), (mod, name)


def test_importing_trio_tts_needs_no_optional_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import trio_tts, sys; print('livekit' in sys.modules, 'hypercorn' in sys.modules, "
        "'trio_websocket' in sys.modules, 'wsproto' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # The optional trio-websocket transport loads only for a pool that asks for it.
    assert out.stdout.split() == ["False", "False", "False", "False"]


def test_test_only_helpers_load_only_when_imported_by_name() -> None:
    import subprocess
    import sys

    code = (
        "import sys, trio_tts, trio_tts.testing; "
        "print('trio_tts.testing.redis_server' in sys.modules, 'coredis' in sys.modules, "
        "'trio_tts.server' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "False", "False"]
