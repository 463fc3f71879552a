"""The demo runs end to end on the tiny preset and writes its report and figures."""

import json
import subprocess
import sys

import pytest

from lsstdrp.demo import main, run_demo


def test_run_demo_tiny_writes_report(tmp_path):
    pytest.importorskip("matplotlib")
    metrics = run_demo(tmp_path, "tiny", seed=1, progress=False)
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "report.md").exists()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["stages"]["sim"]["exposures"] == 8
    # the simulator's own consistency numbers are in the report, and sensible
    assert abs(saved["stages"]["sim"]["blank_sky_variance_ratio_median"] - 1) < 0.05
    # the stages that exist are chained and give sane numbers (their own tests hold the
    # acceptance criteria; this checks the wiring)
    isr = saved["stages"]["isr"]
    assert abs(isr["blank_mean_residual_sigma"]) < 0.1 and abs(isr["blank_residual_rms_over_expected"] - 1) < 0.05
    ext = saved["stages"]["source_extraction"]
    assert ext["detections"] > 0 and ext["completeness_bright"] > 0.8
    for f in metrics["figures"]:
        png = tmp_path / f
        assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert len(metrics["figures"]) >= 4
    assert "blank-sky" in (tmp_path / "report.md").read_text()


def test_cli_rejects_bad_preset(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "enormous"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-m", "lsstdrp.demo", "--help"], capture_output=True, text=True, check=True)
    assert "--preset" in out.stdout and "--out" in out.stdout
