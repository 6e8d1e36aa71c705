"""Layer detection, fail-closed refusal, and the loudly recorded unsafe mode."""

from __future__ import annotations

import pytest
from sandbox_helpers import skip_unless
from structlog.testing import capture_logs

from sandbox import Job, Layer, LayerReport, SandboxConfig, SandboxPool, SandboxUnavailable, detect_layers

NOTHING = LayerReport(
    layers=(
        Layer("bubblewrap", False, "bwrap is not installed"),
        Layer("landlock", False, "the kernel offers no Landlock here"),
        Layer("seccomp", True, "deny-list"),
        Layer("rlimits", True, ""),
        Layer("capdrop", True, ""),
    )
)


def test_detect_layers_is_cached_and_serialisable() -> None:
    report = detect_layers()
    assert detect_layers() is report
    data = report.to_json()
    assert set(data["layers"]) == {"bubblewrap", "landlock", "seccomp", "rlimits", "capdrop"}
    assert data["unsafe_no_sandbox"] is False


@pytest.mark.anyio
async def test_refuses_without_namespaces_and_landlock() -> None:
    with pytest.raises(SandboxUnavailable) as info:
        async with SandboxPool(SandboxConfig(workers=1), layers=NOTHING):
            pass
    message = str(info.value)
    assert "bwrap is not installed" in message and "Landlock" in message


@pytest.mark.anyio
async def test_refuses_when_config_disables_both() -> None:
    with pytest.raises(SandboxUnavailable):
        async with SandboxPool(SandboxConfig(workers=1, use_bubblewrap=False, use_landlock=False)):
            pass


@pytest.mark.anyio
async def test_required_bubblewrap_missing_is_refused() -> None:
    with pytest.raises(SandboxUnavailable, match="bubblewrap was required"):
        async with SandboxPool(SandboxConfig(workers=1, use_bubblewrap=True), layers=NOTHING):
            pass


@pytest.mark.anyio
async def test_unsafe_mode_is_recorded_and_logged() -> None:
    with capture_logs() as logs:
        async with SandboxPool(SandboxConfig(workers=1, unsafe_no_sandbox=True), layers=NOTHING) as pool:
            assert pool.layers.unsafe_no_sandbox
            assert pool.layers.to_json()["unsafe_no_sandbox"] is True
            assert not pool.layers.isolated
            r = await pool.run(Job(program="def f():\n    return 2\n", function="f"))
            assert r.status == "ok" and r.value == 2
    assert any(e["log_level"] == "warning" and "UNSAFE" in e["event"] for e in logs)


@pytest.mark.anyio
async def test_layers_in_use_are_reported() -> None:
    skip_unless("landlock")
    async with SandboxPool(SandboxConfig(workers=1, use_bubblewrap=False)) as pool:
        assert pool.layers.active("landlock") and pool.layers.active("seccomp")
        assert not pool.layers.active("bubblewrap")
        assert pool.layers.get("bubblewrap").detail == "disabled by configuration"
        r = await pool.run(Job(program="import socket\ndef f():\n    socket.socket()\n", function="f"))
        assert r.status == "error" and "seccomp:socket" in r.violations
