"""The outcome contract of the ``stop`` command: exit codes, one-line errors without tracebacks,
``--json`` status and errors, and a crashing improver's message visible in every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from lm.fake_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.json")
CRASHING = """\
def helper(x):
    raise ValueError("the helper broke on " + str(x))


def improve_algorithm(initial_solution, utility, language_model):
    return helper(3)
"""


def stop(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- usage, config and environment errors: one line, exit 2/3, no traceback --------------------


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"lm": {"OPENAI_API_KEY": "sk-abcdefabcdefabcdefabcdef"}}, "lm.OPENAI_API_KEY"),
        ({"lm": {"token": "abc"}}, "lm.token"),
        ({"meta_utility": {"Password": "x"}}, "meta_utility.Password"),
        ({"lm": {"base_url": "https://user:sk-abcdefabcdefabcdef1234@host/v1"}}, "lm.base_url"),
        ({"lm": {"base_url": "https://host/v1?api_key=abc"}}, "lm.base_url"),
        ({"lm": {"model": "m", "api_key_env": "sk-abcdefabcdefabcdefabcdef"}}, "lm.api_key_env"),
    ],
)
def test_secrets_anywhere_are_refused_and_never_reach_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: dict[str, Any], field: str
) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(config))
    store = tmp_path / "s.db"
    code, _, err = run_main(capsys, "improve", "--task", "parity_noise", "--config", str(cfg), "--store", str(store))
    assert code == 2 and field in err and "Traceback" not in err
    assert "sk-abcdef" not in err  # the value itself is never echoed
    assert not store.exists()


@pytest.mark.parametrize(
    ("lm", "field"),
    [
        ({"concurrency": 0}, "lm.concurrency"),
        ({"timeout_s": -1}, "lm.timeout_s"),
        ({"base_url": "not a url"}, "lm.base_url"),
        ({"bogus": 1}, "lm.bogus"),
    ],
)
def test_bad_lm_values_name_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lm: dict[str, Any], field: str
) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"lm": lm}))
    code, _, err = run_main(
        capsys, "improve", "--task", "parity_noise", "--config", str(cfg), "--store", str(tmp_path / "s.db")
    )
    assert code == 2 and field in err and err.count("\n") <= 2, err


def test_future_lm_keys_are_accepted() -> None:
    from agents.config import RunConfig

    lm = {"timeout_s": 30, "reasoning_effort": "low", "max_cost_usd": 1.5, "max_tokens": 1000, "max_lm_calls": 9}
    assert RunConfig.from_dict({"lm": lm}).lm == lm


def test_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin = tmp_path / "latin.py"
    latin.write_bytes(b'x = "\xff\xfe"\n')
    (tmp_path / "dir").mkdir()
    cases = [
        (["score", "--task", "parity_noise", str(latin)], "not UTF-8"),
        (["runs", "--store", str(tmp_path / "missing.db")], "no store at"),
        (["audit", "latest", "--store", str(tmp_path / "missing.db")], "no store at"),
        (["lm", "propose", str(tmp_path / "missing.py"), "--offline"], "cannot read program file"),
        (["sandbox", "run", str(latin), "--memory-mb", "-5"], "not UTF-8"),
        (["tasks", "show", "nope"], "unknown task 'nope'"),
    ]
    for argv, needle in cases:
        code, _, err = run_main(capsys, *argv)
        assert code == 2 and needle in err and "Traceback" not in err, (argv, err)
    ok = tmp_path / "ok.py"
    ok.write_text("def f():\n    return 1\n")
    for value in ("-5", "0"):
        code, _, err = run_main(capsys, "sandbox", "run", str(ok), "--memory-mb", value)
        assert code == 2 and "--memory-mb must be positive" in err


def test_global_options_before_or_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--log-format", "json", "-v", "tasks"], ["tasks", "--log-format", "json", "-v"]):
        code, out, _ = run_main(capsys, *argv)
        assert code == 0 and "parity_noise" in out


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for needle in ("129", "130", "143", "budget_exhausted", '"errors"'):
        assert needle in out
    assert "## Exit codes and --json" in (ROOT / "README.md").read_text()


def test_a_bom_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prog = tmp_path / "bom.py"
    prog.write_bytes(b"\xef\xbb\xbfdef f():\n    return 41 + 1\n")
    code, out, err = run_main(capsys, "sandbox", "run", str(prog), "--function", "f", "--json")
    assert code == 0, err
    assert json.loads(out)["value"] == 42


# ---- a crashing improver: visible everywhere, exit 1 ---------------------------------------------


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("crash")
    improver = tmp / "crashing.py"
    improver.write_text(CRASHING)
    store = tmp / "stop.db"
    done = stop(
        "improve", "--task", "parity_noise", "--improver", str(improver), "--config", QUICKSTART,
        "--store", str(store), "--json", "--no-progress",
    )  # fmt: skip
    return store, done


def test_improve_with_a_crashing_improver_fails_and_says_why(
    crashed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, done = crashed
    assert done.returncode == 1, done.stderr
    js = json.loads(done.stdout)
    assert js["status"] == "failed" and "improvement failed" in js["reason"]
    (err,) = [e for e in js["errors"] if e["where"] == "improve"]
    assert err["kind"] == "ValueError" and "the helper broke on 3" in err["message"] and err["event_id"]
    assert 'File "<candidate>", line 2, in helper' in err["traceback"]
    assert "stop_guest" not in err["traceback"]  # the sandbox's own frames are left out
    assert "the helper broke on 3" in done.stderr and 'File "<candidate>"' in done.stderr


def test_lineage_audit_report_show_the_failure(
    crashed: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    store, _ = crashed
    lineage = stop("lineage", "latest", "--store", str(store))
    assert lineage.returncode == 0 and "[failed]" in lineage.stdout and "the helper broke on 3" in lineage.stdout
    assert "[tried]" not in lineage.stdout or "not returned" in lineage.stdout
    js = json.loads(stop("lineage", "latest", "--store", str(store), "--json").stdout)
    (failed,) = [n for n in js["nodes"] if n["status"] == "failed"]
    assert failed["error"]["kind"] == "ValueError" and failed["val"] == 0.0
    show = stop("lineage", "latest", "--store", str(store), "--show", failed["id"][:12])
    assert "FAILED (ValueError)" in show.stdout and 'File "<candidate>"' in show.stdout
    audit = stop("audit", "latest", "--store", str(store))
    assert audit.returncode == 0 and "failed sessions: 1 (ValueError 1)" in audit.stdout
    ajs = json.loads(stop("audit", "latest", "--store", str(store), "--json").stdout)
    assert ajs["failed_sessions"] == {"total": 1, "by_kind": {"ValueError": 1}}
    out = tmp_path / "r.html"
    report = stop("report", "latest", "--store", str(store), "-o", str(out))
    assert report.returncode == 0, report.stderr
    html = out.read_text()
    assert "node-error" in html and "the helper broke on 3" in html and "&lt;candidate&gt;" in html
    to_dir = stop("report", "latest", "--store", str(store), "-o", str(tmp_path))
    assert to_dir.returncode == 2 and "is a directory" in to_dir.stderr and "Traceback" not in to_dir.stderr
    assert not list(tmp_path.glob("*.tmp"))


def test_self_improve_where_every_generation_failed_exits_1(tmp_path: Path) -> None:
    improver = tmp_path / "crashing.py"
    improver.write_text(CRASHING)
    done = stop(
        "self-improve", "--improver", str(improver), "--config", QUICKSTART, "--store", str(tmp_path / "s.db"),
        "--json", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    js = json.loads(done.stdout)
    assert js["status"] == "failed" and "every generation failed" in js["reason"]
    assert [e["where"] for e in js["errors"]] == ["generation 1", "generation 2"]
    assert done.stderr.count("generation 1: ValueError: the helper broke on 3") == 1


def test_a_finished_run_has_status_finished_and_errors(tmp_path: Path) -> None:
    done = stop(
        "improve", "--task", "parity_noise", "--config", QUICKSTART, "--store", str(tmp_path / "s.db"), "--json"
    )
    assert done.returncode == 0, done.stderr
    js = json.loads(done.stdout)
    assert js["status"] == "finished" and js["errors"] == [] and js["summary"]["session_status"] == "ok"


# ---- an unusable endpoint (a real fake server on 127.0.0.1) --------------------------------------


def test_a_wrong_key_fails_the_improvement_naming_the_variable(tmp_path: Path) -> None:
    with FakeOpenAIServer(api_key="the-right-key", models=["fake-model"]) as srv:
        cfg = tmp_path / "c.json"
        cfg.write_text(
            json.dumps(
                {
                    "lm": {"backend": "openai", "base_url": srv.base_url, "model": "fake-model"},
                    "meta_utility": {"improver": {"responses_per_call": 2, "lm_calls": 2, "utility_calls": 3}},
                }
            )
        )
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OPENAI_")}
        env["OPENAI_API_KEY"] = "a-wrong-key"
        done = stop(
            "improve", "--task", "parity_noise", "--config", str(cfg), "--store", str(tmp_path / "s.db"),
            "--json", "--no-progress", env=env,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    js = json.loads(done.stdout)
    assert js["status"] == "failed"
    assert any("OPENAI_API_KEY" in e["message"] for e in js["errors"])
    assert "OPENAI_API_KEY" in done.stderr
    # The run stops at the first fatal LM error: no host traceback (at most the improver's own).
    frames = [line for line in done.stderr.splitlines() if line.strip().startswith('File "')]
    assert "Traceback" not in done.stderr or frames, done.stderr
    assert all('File "<candidate>"' in line for line in frames), done.stderr
    assert "the language model is unusable" in done.stderr
    assert "a-wrong-key" not in done.stdout + done.stderr


def test_no_sandbox_is_exit_3_with_one_line_and_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine where neither bubblewrap nor Landlock works (the real probe, those two layers
    reported missing): no traceback, exit 3, the message says what to install."""
    import sandbox._pool as pool_mod

    real = pool_mod.detect_layers
    monkeypatch.setattr(
        pool_mod, "detect_layers", lambda: real().without("bubblewrap", "landlock", reason="not on this machine")
    )
    prog = tmp_path / "p.py"
    prog.write_text("def f():\n    return 1\n")
    code, _, err = run_main(capsys, "sandbox", "run", str(prog), "--function", "f")
    assert code == 3 and "Traceback" not in err, err
    assert "Install bubblewrap" in err and "stop doctor" in err and len(err.strip().splitlines()) == 2
