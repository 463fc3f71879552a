"""Render ``docs/dataflow.yaml`` (the DRP data flow of DESIGN.md section 3) as graphviz.

Usage::

    python docs/dataflow_graph.py [--yaml docs/dataflow.yaml] [--outdir DIR]

writes ``DIR/dataflow.dot`` and, when the graphviz ``dot`` executable is on ``PATH``,
``DIR/dataflow.svg``; without graphviz the SVG step is skipped with a message. The
default ``DIR`` is ``docs/_build/generated`` (git-ignored). ``docs/conf.py`` calls
:func:`main` on every docs build; :func:`to_dot` is importable on its own and needs
nothing but the parsed YAML.

Drawing rules: a stage is a box (dashed for preprocessing stages that run before the
main survey), an external input an ellipse, an edge is labelled with the product that
flows along it, and an iteration between two stages is one two-way (``dir=both``)
bold edge labelled with how often it runs and what flows back.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["load", "to_dot", "render_svg", "main"]

HERE = Path(__file__).resolve().parent
DEFAULT_YAML = HERE / "dataflow.yaml"
DEFAULT_OUTDIR = HERE / "_build" / "generated"


def load(path: str | Path = DEFAULT_YAML) -> dict[str, Any]:
    """Parse the data-flow YAML file (needs PyYAML)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _q(text: Any) -> str:
    """Quote ``text`` as a DOT string (IDs with dots and labels with spaces need it)."""
    s = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{s}"'


def _attrs(**kw: Any) -> str:
    return "[" + ", ".join(f"{k}={_q(v)}" for k, v in kw.items() if v is not None) + "]"


def to_dot(data: dict[str, Any]) -> str:
    """Return the graphviz DOT text of the data flow described by ``data``.

    Parameters
    ----------
    data : dict
        The parsed ``dataflow.yaml``: ``stages`` (each with ``name``, ``subpackage``,
        ``consumes``, ``produces``, ``sequence_point``), optional ``inputs``, ``edges``
        (``from``, ``to``, ``product``) and ``iterations`` (``stages`` pair, ``times``,
        ``label``, optional ``feedback``).

    Returns
    -------
    str
        A ``digraph`` in which every stage is a node, every edge carries its product as
        label, and every iteration is a single ``dir=both`` edge with a label.

    Raises
    ------
    ValueError
        If an edge, input or iteration names a stage that is not in ``stages``.
    """
    stages = data["stages"]
    names = [s["name"] for s in stages]
    known = set(names)

    def check(name: str, where: str) -> str:
        if name not in known:
            raise ValueError(f"{where} names unknown stage {name!r}; known stages: {names}")
        return name

    lines = [
        "digraph drp_dataflow {",
        '  graph [rankdir="TB", fontname="Helvetica", fontsize="11", nodesep="0.35", ranksep="0.45",'
        ' label="lsstdrp: DRP data flow (docs/dataflow.yaml)", labelloc="t"];',
        '  node [shape="box", style="rounded", fontname="Helvetica", fontsize="11"];',
        '  edge [fontname="Helvetica", fontsize="8", color="gray30"];',
        "",
        "  // stages",
    ]
    for s in stages:
        label = f"{s['name']}\n(lsstdrp.{s['subpackage']})\n{s['sequence_point']}"
        style = "rounded,dashed" if s.get("preprocessing") else "rounded"
        lines.append(f"  {_q(s['name'])} {_attrs(label=label, style=style, tooltip=', '.join(s['produces']))};")
    inputs = data.get("inputs") or []
    if inputs:
        lines += ["", "  // external inputs"]
    for inp in inputs:
        node = f"input:{inp['name']}"
        lines.append(f"  {_q(node)} {_attrs(label=inp['name'], shape='ellipse', style='filled', fillcolor='gray95')};")
        for target in inp["feeds"]:
            check(target, f"input {inp['name']!r}")
            lines.append(f"  {_q(node)} -> {_q(target)} {_attrs(label=inp.get('product'), style='dotted')};")
    lines += ["", "  // products flowing from stage to stage (first pass)"]
    for e in data.get("edges") or []:
        a = check(e["from"], "edge")
        b = check(e["to"], "edge")
        lines.append(f"  {_q(a)} -> {_q(b)} {_attrs(label=e.get('product'))};")
    iterations = data.get("iterations") or []
    if iterations:
        lines += ["", "  // iterations: run alternately a fixed number of times"]
    for it in iterations:
        a, b = (check(n, "iteration") for n in it["stages"])
        label = it.get("label") or f"iterate {a} <-> {b} x{it.get('times', 2)}"
        if it.get("feedback"):
            label += f"\n({it['feedback']})"
        lines.append(
            f"  {_q(a)} -> {_q(b)} "
            + _attrs(dir="both", style="bold", color="firebrick", fontcolor="firebrick", label=label, constraint="false")
            + ";"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot_path: Path, svg_path: Path) -> bool:
    """Render ``dot_path`` to ``svg_path`` with graphviz; return False if ``dot`` is absent.

    Raises
    ------
    subprocess.CalledProcessError
        If graphviz is installed but rejects the DOT text.
    """
    exe = shutil.which("dot")
    if exe is None:
        return False
    subprocess.run([exe, "-Tsvg", "-o", str(svg_path), str(dot_path)], check=True, capture_output=True)
    return True


def main(argv: list[str] | None = None) -> dict[str, Path | None]:
    """Write ``dataflow.dot`` (and ``dataflow.svg`` when graphviz is installed).

    Returns
    -------
    dict
        ``{"dot": path, "svg": path or None}``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--yaml", type=Path, default=DEFAULT_YAML, help="data-flow YAML (default: %(default)s)")
    parser.add_argument("--outdir", type=Path, default=DEFAULT_OUTDIR, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    dot_path = args.outdir / "dataflow.dot"
    dot_path.write_text(to_dot(load(args.yaml)), encoding="utf-8")
    svg_path: Path | None = args.outdir / "dataflow.svg"
    if render_svg(dot_path, svg_path):
        print(f"dataflow_graph: wrote {dot_path} and {svg_path}")
    else:
        svg_path.unlink(missing_ok=True)  # never leave a stale SVG behind
        svg_path = None
        print(f"dataflow_graph: wrote {dot_path}; graphviz 'dot' not on PATH, SVG skipped")
    return {"dot": dot_path, "svg": svg_path}


if __name__ == "__main__":
    main()
    sys.exit(0)
