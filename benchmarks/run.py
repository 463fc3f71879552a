"""Time lsstdrp against a peer library on the same data, in one process.

Usage::

    python benchmarks/run.py [--only NAME] [--repeats N] [--json PATH] [--dir DIR]

Every ``bench_*.py`` module in ``benchmarks/`` (or ``--dir``) exposes
``benchmarks() -> list[dict]``; each dict has

``name``       unique benchmark name (``--only`` selects names containing NAME);
``setup``      ``() -> data``, builds the input once, not timed;
``lsstdrp``    ``(data) -> Any``, the lsstdrp side;
``peer``       ``(data) -> Any`` or None, the peer library on the same data;
``peer_name``  the peer's distribution name (its version is recorded);
``repeats``    optional number of timed calls per side (default 5; ``--repeats`` wins).

For each benchmark both sides are called once to warm up (numba compilation, caches),
then timed ``repeats`` times with :func:`time.perf_counter`; the median is reported, and
the ratio is ``lsstdrp median / peer median`` (< 1: lsstdrp is faster). Each side is then
called once more to measure its peak-RSS increase: the peak resident set size during the
call minus the RSS just before it, after freed heap memory has been handed back to the
OS (glibc ``malloc_trim``) so that the call cannot hide its allocations by reusing memory
the warm-up left resident. On Linux the kernel's high-water mark is reset first
(``5`` written to ``/proc/self/clear_refs``) and ``VmHWM`` read afterwards, which is
exact; elsewhere a thread samples the RSS every millisecond (psutil, else
``/proc/self/statm``), which can miss spikes shorter than that. The method used is
printed and stored. Results go to ``benchmarks/results/<name>.json`` (git-ignored), or
all into one file with ``--json``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["discover", "collect", "time_calls", "peak_rss_increase", "run_benchmark", "format_table", "main"]

HERE = Path(__file__).resolve().parent
DEFAULT_REPEATS = 5
REQUIRED_KEYS = ("name", "setup", "lsstdrp", "peer", "peer_name")
MB = 1024.0 * 1024.0


# -- discovery ----------------------------------------------------------------------------
def discover(directory: str | Path = HERE) -> list[ModuleType]:
    """Import every ``bench_*.py`` in ``directory`` (sorted by file name)."""
    modules = []
    for path in sorted(Path(directory).glob("bench_*.py")):
        name = f"lsstdrp_benchmarks.{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling need the module registered
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def collect(modules: Iterable[ModuleType], only: str | None = None) -> list[dict[str, Any]]:
    """The benchmark specs of ``modules``, validated, filtered by ``only`` (substring)."""
    specs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for module in modules:
        if not callable(getattr(module, "benchmarks", None)):
            raise TypeError(f"{module.__file__}: a bench_*.py module must define benchmarks() -> list[dict]")
        for spec in module.benchmarks():
            missing = [k for k in REQUIRED_KEYS if k not in spec]
            if missing:
                raise ValueError(f"{module.__file__}: benchmark {spec.get('name')!r} lacks {missing}")
            for key in ("setup", "lsstdrp"):
                if not callable(spec[key]):
                    raise TypeError(f"benchmark {spec['name']!r}: {key!r} must be callable")
            if spec["peer"] is not None and not callable(spec["peer"]):
                raise TypeError(f"benchmark {spec['name']!r}: 'peer' must be callable or None")
            if spec["name"] in seen:
                raise ValueError(f"duplicate benchmark name {spec['name']!r}")
            seen.add(spec["name"])
            if only is None or only in spec["name"]:
                specs.append({**spec, "module": module.__name__.rsplit(".", 1)[-1]})
    return specs


# -- timing -------------------------------------------------------------------------------
def time_calls(func: Callable[[Any], Any], data: Any, repeats: int) -> list[float]:
    """Wall time in seconds of ``repeats`` calls of ``func(data)`` (no warm-up here)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func(data)
        times.append(time.perf_counter() - t0)
    return times


# -- memory -------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc ``malloc_trim``).

    Without this, memory freed by the warm-up and timed calls stays resident (glibc
    raises its mmap threshold after a large free and then serves the next large array
    from the heap), so the measured call would reuse it and show no RSS increase.
    """
    gc.collect()
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: Any = None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _rss_reader() -> Callable[[], int]:
    """A function returning the current RSS in bytes (psutil, else /proc/self/statm)."""
    try:
        import psutil

        proc = psutil.Process()
        return lambda: proc.memory_info().rss
    except ImportError:
        page = os.sysconf("SC_PAGE_SIZE")

        def statm() -> int:
            with open("/proc/self/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * page

        return statm


class _Sampler(threading.Thread):
    def __init__(self, read: Callable[[], int], interval: float = 1e-3) -> None:
        super().__init__(daemon=True)
        self.read, self.interval = read, interval
        self.peak = read()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.read())
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, self.read())
        return self.peak


def peak_rss_increase(func: Callable[[Any], Any], data: Any, method: str | None = None) -> tuple[float, str]:
    """Peak-RSS increase in MB of one call ``func(data)``, and the method used.

    ``method`` is ``"vmhwm"`` (reset the kernel high-water mark, exact), ``"sampling"``
    (a 1 ms sampling thread) or None for the best available.
    """
    _release_free_memory()
    if method in (None, "vmhwm") and _reset_hwm():
        before = _status_kib("VmRSS")
        func(data)
        peak = _status_kib("VmHWM")
        return max(0.0, (peak - before) * 1024.0 / MB), "vmhwm"
    if method == "vmhwm":
        raise RuntimeError("the kernel peak-RSS mark cannot be reset here (/proc/self/clear_refs)")
    read = _rss_reader()
    before = read()
    sampler = _Sampler(read)
    sampler.start()
    try:
        func(data)
    finally:
        peak = sampler.stop()
    return max(0.0, (peak - before) / MB), "sampling"


# -- one benchmark ----------------------------------------------------------------------------
def _version(dist: str | None) -> str | None:
    if not dist:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_benchmark(spec: dict[str, Any], repeats: int | None = None, memory_method: str | None = None) -> dict[str, Any]:
    """Warm up, time and measure one benchmark spec; return its result record."""
    n = int(repeats if repeats is not None else spec.get("repeats", DEFAULT_REPEATS))
    if n < 1:
        raise ValueError(f"repeats must be >= 1; got {n}")
    data = spec["setup"]()
    sides = {"lsstdrp": spec["lsstdrp"], "peer": spec["peer"]}
    result: dict[str, Any] = {
        "name": spec["name"],
        "module": spec.get("module"),
        "peer_name": spec["peer_name"],
        "repeats": n,
    }
    for side, func in sides.items():
        if func is None:
            result.update({f"{side}_times_s": None, f"{side}_median_s": None, f"{side}_drss_mb": None})
            continue
        func(data)  # warm-up: numba compilation, caches, lazy imports
        times = time_calls(func, data, n)
        drss, method = peak_rss_increase(func, data, memory_method)
        result.update({
            f"{side}_times_s": times,
            f"{side}_median_s": statistics.median(times),
            f"{side}_drss_mb": drss,
        })
        result["memory_method"] = method
    peer_median = result["peer_median_s"]
    result["ratio"] = result["lsstdrp_median_s"] / peer_median if peer_median else None
    result["environment"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "lsstdrp": _version("lsstdrp"),
        "numpy": _version("numpy"),
        "peer_version": _version(spec["peer_name"]),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return result


# -- output -------------------------------------------------------------------------------------
def format_table(results: list[dict[str, Any]]) -> str:
    """A plain-text table: name, medians, ratio lsstdrp/peer, ΔRSS of each side."""

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = ("benchmark", "peer", "lsstdrp [s]", "peer [s]", "ratio", "dRSS lsstdrp [MB]", "dRSS peer [MB]")
    rows = [header]
    for r in results:
        rows.append((
            r["name"],
            str(r["peer_name"] or "-"),
            num(r["lsstdrp_median_s"], ".4g"),
            num(r["peer_median_s"], ".4g"),
            num(r["ratio"], ".3g"),
            num(r["lsstdrp_drss_mb"], ".1f"),
            num(r["peer_drss_mb"], ".1f"),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for k, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])] + [c.rjust(w) for c, w in zip(row[2:], widths[2:])]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    methods = sorted({r.get("memory_method") for r in results if r.get("memory_method")})
    lines.append(f"median wall time of the repeats after one warm-up call; ratio = lsstdrp / peer; "
                 f"dRSS = peak-RSS increase of one call ({', '.join(methods) or '-'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Command-line entry point; returns the result records."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", metavar="NAME", help="run the benchmarks whose name contains NAME")
    parser.add_argument("--repeats", type=int, metavar="N", help="timed calls per side (overrides each benchmark)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write all results to PATH instead of results/")
    parser.add_argument("--dir", type=Path, default=HERE, help="folder of bench_*.py modules (default: %(default)s)")
    args = parser.parse_args(argv)

    specs = collect(discover(args.dir), args.only)
    if not specs:
        parser.error(f"no benchmark found in {args.dir}" + (f" matching {args.only!r}" if args.only else ""))
    results = []
    for spec in specs:
        print(f"running {spec['name']} ...", file=sys.stderr, flush=True)
        results.append(run_benchmark(spec, args.repeats))
    print(format_table(results))

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    else:
        outdir = args.dir / "results"
        outdir.mkdir(parents=True, exist_ok=True)
        for r in results:
            (outdir / f"{r['name']}.json").write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
