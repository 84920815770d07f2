"""The command line takes its defaults from the config dataclasses, and refuses bad sizes at parse time."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgedepth.cli import build_parser, main
from edgedepth.eval import nyu as evaluate
from edgedepth.eval.config import EvalConfig, make_protocol
from edgedepth.label import job as label
from edgedepth.label import recipe


def test_label_without_flags_is_the_configs_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[label.LabelConfig] = []
    monkeypatch.setattr(label, "run", lambda cfg: seen.append(cfg) or SimpleNamespace(main=False))
    assert main(["label", "images", "out", "--teacher", "oracle"]) == 0
    assert seen == [label.LabelConfig(source="images", out=Path("out"), teacher="oracle")]
    assert main(["label", "images", "out", "--teacher", "oracle", "--size", "128x96", "--batch", "2"]) == 0
    assert (seen[1].recipe.size, seen[1].batch_size, seen[1].recipe.crop) == ((128, 96), 2, recipe.Recipe().crop)


def test_eval_without_flags_is_the_configs_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[EvalConfig] = []
    summary = SimpleNamespace(table="", skipped=0, evaluated=0, seconds=0.0, images_per_second=0.0)
    monkeypatch.setattr(evaluate, "run", lambda cfg: seen.append(cfg) or summary)
    assert main(["eval", "nyu", "--baseline", "ramp"]) == 0
    assert seen == [EvalConfig(baseline="ramp", protocol=make_protocol("seed"))]


def test_help_shows_the_dataclass_defaults() -> None:
    eval_parser = build_parser("eval")._subparsers._group_actions[0].choices["eval"]  # type: ignore[union-attr]
    text = eval_parser._subparsers._group_actions[0].choices["nyu"].format_help()  # type: ignore[union-attr]
    assert f"(default: {EvalConfig.batch_size})" in text and f"(default: {EvalConfig.out})" in text


@pytest.mark.parametrize("command", [["predict", "x.png"], ["eval", "nyu"], ["export", "--weights", "w", "--format", "onnx",
                                                                      "--out", "o.onnx"], ["serve", "--weights", "w"],
                                     ["label", "a", "b", "--teacher", "oracle"], ["bench"], ["synth", "out", "--count", "1"]])
def test_a_bad_size_is_a_usage_error_at_once(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--size", "256by192"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    prog = "edgedepth eval nyu" if command[0] == "eval" else f"edgedepth {command[0]}"
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: argument --size: size '256by192' is not")


def test_out_predict_out_given_explicitly_counts_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--video", "clip.mp4", "--weights", "w.safetensors", "--out", "predict_out"]) == 2
    assert "--out predict_out: with --video or --camera, --out names the .mp4 file to write" in capsys.readouterr().err


def test_library_warnings_go_through_logging_and_the_cli_sets_the_level(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A library warning is a record of its module's logger; -q keeps warnings, the CLI prints them in one format."""
    from edgedepth.core.logs import configure_logging
    from edgedepth.data import sources

    try:
        with caplog.at_level("WARNING", logger="edgedepth"):
            sources.warn("a file could not be read")
        assert [(r.name, r.levelname) for r in caplog.records] == [("edgedepth.data.sources", "WARNING")]
        assert capsys.readouterr().err == "edgedepth: warning: a file could not be read\n"
        configure_logging(-1)
        evaluate.logger.info("a note")
        evaluate.logger.warning("a warning")
        assert capsys.readouterr().err == "edgedepth: warning: a warning\n"
        assert main(["-q", "models", "--json", "fastdepth_v3"]) == 0
        assert main(["-v", "models", "fastdepth_v3"]) == 0
        evaluate.logger.debug("details")
        assert capsys.readouterr().err.endswith("edgedepth: debug: details\n")
    finally:
        configure_logging()


def test_the_top_level_help_imports_no_command_module() -> None:
    """``edgedepth --help`` (and a command's parsing) builds only the options it needs: no torch to wait for."""
    import subprocess
    import sys

    code = ("import sys\nfrom edgedepth.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'edgedepth.eval.nyu', 'edgedepth.train') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
