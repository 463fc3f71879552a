"""docs/dataflow.yaml holds DESIGN.md section 3, and docs/dataflow_graph.py draws all of it."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DESIGN = ROOT.parent / "shared" / "DESIGN.md"  # beside the clone in CI; optional

#: The rows of the DESIGN.md section 3 table ("stage" column), iteration rows excluded.
DESIGN_STAGES = [
    "isr.calibs", "isr", "characterize", "jointcal", "psf", "coadd", "diffim",
    "sso", "detect", "deblend", "measure", "multifit", "forcedphot",
]
#: What the table says feeds what (consumer <- producer), read off its consumes column.
DESIGN_EDGES = [
    ("isr.calibs", "isr"),             # calibs
    ("isr", "characterize"),           # exposure
    ("characterize", "jointcal"),      # per-detector catalogs
    ("jointcal", "psf"),               # PSF-star catalog, colors from jointcal
    ("characterize", "psf"),           # exposure
    ("jointcal", "coadd"),             # calibrated exposures
    ("psf", "coadd"),                  # PSFs
    ("coadd", "diffim"),               # template coadd
    ("diffim", "sso"),                 # DIA sources
    ("coadd", "detect"),               # suite of coadds
    ("diffim", "detect"),              # merged across DIA
    ("sso", "detect"),                 # merged across SSO
    ("detect", "deblend"),             # footprints
    ("coadd", "deblend"),              # coadds of all bands
    ("deblend", "measure"),            # deblended pixels
    ("coadd", "measure"),              # coadds
    ("measure", "multifit"),           # objects
    ("measure", "forcedphot"),         # object positions
]
ITERATIONS = [{"jointcal", "psf"}, {"coadd", "diffim"}]


def _load_graph_module():
    spec = importlib.util.spec_from_file_location("dataflow_graph", DOCS / "dataflow_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graph():
    return _load_graph_module()


@pytest.fixture(scope="module")
def data():
    with open(DOCS / "dataflow.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def dot(graph, data):
    return graph.to_dot(data)


def _dot_edges(dot: str) -> list[tuple[str, str, str]]:
    """(tail, head, attribute text) of every ``"a" -> "b" [...]`` statement."""
    return re.findall(r'^\s*"([^"]+)"\s*->\s*"([^"]+)"\s*(\[.*\])?\s*;\s*$', dot, flags=re.M)


def _dot_nodes(dot: str) -> set[str]:
    return set(re.findall(r'^\s*"([^"]+)"\s*\[', dot, flags=re.M))


def test_yaml_has_every_design_stage_with_its_fields(data):
    names = [s["name"] for s in data["stages"]]
    assert len(names) == len(set(names)), "duplicate stage names"
    assert set(DESIGN_STAGES) <= set(names)
    for s in data["stages"]:
        for key in ("name", "subpackage", "consumes", "produces", "sequence_point"):
            assert s.get(key), f"stage {s.get('name')!r} lacks {key!r}"
        assert isinstance(s["consumes"], list) and isinstance(s["produces"], list)
    extra = set(names) - set(DESIGN_STAGES)
    for name in extra:  # stages beyond the table must say so
        (stage,) = [s for s in data["stages"] if s["name"] == name]
        assert stage.get("in_design_table") is False, name


def test_items_are_whole(data):
    # a comma inside an unquoted YAML flow list splits an item: "PTC (gain" + "noise)"
    for s in data["stages"]:
        for item in s["consumes"] + s["produces"]:
            assert isinstance(item, str) and item.count("(") == item.count(")"), (s["name"], item)


@pytest.mark.skipif(not DESIGN.is_file(), reason="../shared/DESIGN.md not beside the repository")
def test_design_table_matches_the_stage_list(data):
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split("## 3.", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if re.match(r"^\|\s*[a-z][a-z.]*\s*\|", line)
    ]
    assert rows[0][0] == "stage"  # the header row
    assert [r[0] for r in rows[1:]] == DESIGN_STAGES
    sequence_points = {s["name"]: s["sequence_point"] for s in data["stages"]}
    for name, _consumes, _produces, sequence_point in rows[1:]:
        assert sequence_points[name] == sequence_point


def test_every_subpackage_named_exists(data):
    src = ROOT / "src" / "lsstdrp"
    for s in data["stages"]:
        assert (src / s["subpackage"] / "__init__.py").is_file(), s
        if "module" in s:
            parts = s["module"].split(".")
            assert parts[:2] == ["lsstdrp", s["subpackage"]], s["module"]


def test_edges_reference_stages_and_form_a_dag(data):
    names = {s["name"] for s in data["stages"]}
    edges = [(e["from"], e["to"]) for e in data["edges"]]
    for a, b in edges:
        assert a in names and b in names, (a, b)
    assert all(e.get("product") for e in data["edges"])
    assert set(DESIGN_EDGES) <= set(edges), set(DESIGN_EDGES) - set(edges)
    # the first pass is acyclic: Kahn's algorithm consumes every node
    indeg = {n: 0 for n in names}
    for _, b in edges:
        indeg[b] += 1
    ready = [n for n, d in indeg.items() if d == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        for a, b in edges:
            if a == n:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    assert seen == len(names), "edges contain a cycle; feedback belongs in `iterations`"
    for inp in data.get("inputs", []):
        assert set(inp["feeds"]) <= names, inp


def test_iterations_are_the_two_designed_ones(data):
    its = data["iterations"]
    assert [set(it["stages"]) for it in its] == ITERATIONS
    for it in its:
        assert it["times"] == 2
        assert it["label"] and it["reason"]
    coadd = [it for it in its if set(it["stages"]) == {"coadd", "diffim"}][0]
    assert "artifact mask" in (coadd["reason"] + coadd.get("feedback", "")).lower()


def test_dot_has_every_stage_as_a_node(dot, data):
    nodes = _dot_nodes(dot)
    for name in DESIGN_STAGES + [s["name"] for s in data["stages"]]:
        assert name in nodes, name


def test_dot_has_every_edge_with_its_product(dot, data):
    edges = _dot_edges(dot)
    for e in data["edges"]:
        matches = [attrs for a, b, attrs in edges if (a, b) == (e["from"], e["to"]) and "dir=" not in attrs]
        assert matches, (e["from"], e["to"])
        assert any(f'label="{e["product"]}"' in attrs for attrs in matches), e
    for inp in data.get("inputs", []):
        for target in inp["feeds"]:
            assert (f"input:{inp['name']}", target) in {(a, b) for a, b, _ in edges}


def test_dot_draws_iterations_two_way_with_labels(dot, data):
    edges = _dot_edges(dot)
    for it in data["iterations"]:
        a, b = it["stages"]
        both = [attrs for x, y, attrs in edges if {x, y} == {a, b} and 'dir="both"' in attrs]
        one_way = {(x, y) for x, y, attrs in edges if {x, y} == {a, b} and "iterate" in attrs}
        assert both or one_way == {(a, b), (b, a)}, f"iteration {a} <-> {b} is not drawn two-way"
        labelled = both or [attrs for x, y, attrs in edges if (x, y) in one_way]
        assert all(re.search(r'label="[^"]*iterate', attrs) for attrs in labelled), labelled


def test_dot_is_parseable(dot):
    assert dot.startswith("digraph ") and dot.rstrip().endswith("}")
    # braces and brackets balance outside quoted strings; every quote is closed
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)
    assert '"' not in unquoted.replace('""', "")
    assert unquoted.count("{") == unquoted.count("}") == 1
    assert unquoted.count("[") == unquoted.count("]")
    for line in unquoted.splitlines()[1:-1]:
        line = line.strip()
        assert not line or line.startswith("//") or line.endswith(";"), line
    try:
        import pydot
    except ImportError:
        pydot = None
    if pydot is not None:
        (parsed,) = pydot.graph_from_dot_data(dot)
        assert parsed.get_name() == "drp_dataflow"
    if shutil.which("dot"):
        out = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        assert "<svg" in out.stdout


def test_unknown_stage_in_an_edge_is_rejected(graph, data):
    bad = dict(data, edges=[*data["edges"], {"from": "isr", "to": "nonesuch", "product": "x"}])
    with pytest.raises(ValueError, match="nonesuch"):
        graph.to_dot(bad)


def test_main_writes_dot_and_skips_svg_without_graphviz(graph, tmp_path, monkeypatch):
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    out = graph.main(["--outdir", str(tmp_path)])
    assert out["svg"] is None and not (tmp_path / "dataflow.svg").exists()
    assert out["dot"].read_text(encoding="utf-8") == graph.to_dot(graph.load())
