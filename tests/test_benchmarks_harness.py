"""benchmarks/run.py: discovery, timing, memory and output, on a throw-away bench module."""

from __future__ import annotations

import importlib.util
import json
import statistics
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BENCH_MODULE = '''
"""numpy.sort against the built-in sorted, as a stand-in for lsstdrp against a peer."""
import numpy as np

CALLS = {"setup": 0, "lsstdrp": 0, "peer": 0}


def _setup():
    CALLS["setup"] += 1
    return np.random.default_rng(1).random(20_000)


def _lsstdrp(data):
    CALLS["lsstdrp"] += 1
    return np.sort(data)


def _peer(data):
    CALLS["peer"] += 1
    return sorted(data.tolist())


def _alloc(data):
    CALLS["lsstdrp"] += 1
    # 16 MiB, touched: below glibc's largest dynamic mmap threshold (32 MiB), so after
    # the warm-up it is served from freed heap memory unless the harness trims the heap
    big = np.ones(16 * 1024 * 1024 // 8)
    return float(big.sum())


def benchmarks():
    return [
        {"name": "sort_20k", "setup": _setup, "lsstdrp": _lsstdrp, "peer": _peer,
         "peer_name": "numpy", "repeats": 3},
        {"name": "alloc_16mb", "setup": _setup, "lsstdrp": _alloc, "peer": None,
         "peer_name": None, "repeats": 2},
    ]
'''


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("lsstdrp_bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench_dir(tmp_path):
    (tmp_path / "bench_sorting.py").write_text(textwrap.dedent(BENCH_MODULE), encoding="utf-8")
    (tmp_path / "helper.py").write_text("raise RuntimeError('not a bench module')\n", encoding="utf-8")
    return tmp_path


def test_discover_and_collect(harness, bench_dir):
    modules = harness.discover(bench_dir)
    assert [m.__name__.rsplit(".", 1)[-1] for m in modules] == ["bench_sorting"]
    specs = harness.collect(modules)
    assert [s["name"] for s in specs] == ["sort_20k", "alloc_16mb"]
    assert specs[0]["module"] == "bench_sorting"
    assert [s["name"] for s in harness.collect(modules, only="sort")] == ["sort_20k"]
    assert harness.collect(modules, only="nonesuch") == []


def test_collect_rejects_bad_specs(harness, tmp_path):
    (tmp_path / "bench_bad.py").write_text(
        "def benchmarks():\n    return [{'name': 'x', 'setup': list, 'lsstdrp': len}]\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="lacks"):
        harness.collect(harness.discover(tmp_path))


def test_run_benchmark_warms_up_times_and_takes_medians(harness, bench_dir):
    (module,) = harness.discover(bench_dir)
    spec = harness.collect([module], only="sort")[0]
    result = harness.run_benchmark(spec)
    # one setup; per side one warm-up, `repeats` timed calls and one memory call
    assert module.CALLS == {"setup": 1, "lsstdrp": 1 + 3 + 1, "peer": 1 + 3 + 1}
    assert len(result["lsstdrp_times_s"]) == len(result["peer_times_s"]) == 3
    assert result["lsstdrp_median_s"] == statistics.median(result["lsstdrp_times_s"])
    assert result["peer_median_s"] == statistics.median(result["peer_times_s"])
    assert result["ratio"] == pytest.approx(result["lsstdrp_median_s"] / result["peer_median_s"])
    assert result["lsstdrp_drss_mb"] >= 0 and result["peer_drss_mb"] >= 0
    assert result["memory_method"] in ("vmhwm", "sampling")
    assert result["environment"]["peer_version"]  # numpy's version
    cheap = {**spec, "setup": list, "lsstdrp": len, "peer": None}
    assert harness.run_benchmark(cheap, repeats=2)["repeats"] == 2  # --repeats wins


@pytest.mark.parametrize("method", ["vmhwm", "sampling"])
def test_peak_rss_increase_sees_a_16mb_allocation(harness, bench_dir, method):
    (module,) = harness.discover(bench_dir)
    if method == "vmhwm" and not harness._reset_hwm():
        pytest.skip("the kernel peak-RSS mark cannot be reset on this system")
    if method == "sampling":
        # make the allocation last long enough for a 1 ms sampler to see it
        import time

        def func(data):
            big = module.np.ones(16 * 1024 * 1024 // 8)
            time.sleep(0.05)
            return float(big.sum())
    else:
        func = module._alloc
    for _ in range(3):  # leave freed memory behind, as warm-up and timed calls do
        func(None)
    drss, used = harness.peak_rss_increase(func, None, method)
    assert used == method
    assert 14 < drss < 40, drss


def test_main_prints_table_and_writes_json(harness, bench_dir, tmp_path, capsys):
    out = tmp_path / "out" / "all.json"
    results = harness.main(["--dir", str(bench_dir), "--json", str(out)])
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["benchmark", "peer", "lsstdrp"]
    sort_row = next(line for line in lines if line.startswith("sort_20k"))
    alloc_row = next(line for line in lines if line.startswith("alloc_16mb"))
    r = {x["name"]: x for x in results}
    assert f"{r['sort_20k']['ratio']:.3g}" in sort_row.split()
    assert alloc_row.split()[1:5] == ["-", f"{r['alloc_16mb']['lsstdrp_median_s']:.4g}", "-", "-"]
    assert "ratio = lsstdrp / peer" in table

    saved = json.loads(out.read_text(encoding="utf-8"))
    assert [x["name"] for x in saved] == ["sort_20k", "alloc_16mb"]
    s = saved[0]
    assert s["ratio"] == pytest.approx(s["lsstdrp_median_s"] / s["peer_median_s"])
    assert saved[1]["ratio"] is None and saved[1]["peer_median_s"] is None
    assert saved[1]["lsstdrp_drss_mb"] > 14  # the 16 MiB allocation is seen after warm-up


def test_main_default_writes_one_json_per_benchmark(harness, bench_dir, capsys):
    harness.main(["--dir", str(bench_dir), "--only", "sort", "--repeats", "1"])
    capsys.readouterr()
    saved = json.loads((bench_dir / "results" / "sort_20k.json").read_text(encoding="utf-8"))
    assert saved["name"] == "sort_20k" and saved["repeats"] == 1
    assert not (bench_dir / "results" / "alloc_16mb.json").exists()


def test_main_without_matching_benchmarks_fails(harness, bench_dir, capsys):
    with pytest.raises(SystemExit):
        harness.main(["--dir", str(bench_dir), "--only", "nonesuch"])
    assert "no benchmark found" in capsys.readouterr().err
