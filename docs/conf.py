"""Sphinx configuration of the lsstdrp documentation.

Build with ``python -m sphinx -b html docs docs/_build/html`` from an environment with
the ``docs`` extra (``pip install -e ".[docs]"``). lsstdrp is imported as installed (no
``sys.path`` manipulation). Every build regenerates the data-flow graph from
``dataflow.yaml`` into ``_build/generated/`` (DOT always, SVG when graphviz's ``dot``
is on PATH) and provides three small directives that render the YAML, so the stage pages,
the data-flow page and the graph have one source of truth:

``.. dataflow-stage:: NAME``   consumes / produces / sequence point / neighbours of a stage
``.. dataflow-table::``        the whole DESIGN.md section 3 table
``.. dataflow-graph::``        the SVG (or a note) followed by the DOT source
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

import lsstdrp

HERE = Path(__file__).resolve().parent
DATAFLOW_YAML = HERE / "dataflow.yaml"
GENERATED = HERE / "_build" / "generated"  # git-ignored with the rest of docs/_build

# -- project -------------------------------------------------------------------------
project = "lsstdrp"
author = "The lsstdrp developers"
copyright = "2026, The lsstdrp developers"
release = lsstdrp.__version__
version = ".".join(release.split(".")[:2])

# -- general -------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"
default_role = "obj"
pygments_style = "sphinx"

autodoc_typehints = "none"  # numpydoc docstrings carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

html_theme = "alabaster"
html_title = f"lsstdrp {release}"
html_static_path: list[str] = []


# -- data flow: graph generation and directives ------------------------------------------
def _load_graph_module():
    spec = importlib.util.spec_from_file_location("lsstdrp_docs_dataflow_graph", HERE / "dataflow_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_graph = _load_graph_module()
_DATA = _graph.load(DATAFLOW_YAML)
_STAGES = {s["name"]: s for s in _DATA["stages"]}


_HAVE_SVG = False  # set on builder-inited: did graphviz render the SVG?


def _generate_graph(app) -> None:
    global _HAVE_SVG
    out = _graph.main(["--yaml", str(DATAFLOW_YAML), "--outdir", str(GENERATED)])
    _HAVE_SVG = out["svg"] is not None


class _YamlDirective(SphinxDirective):
    """Base: render reStructuredText built from dataflow.yaml."""

    def _render(self, rst: str) -> list[nodes.Node]:
        self.env.note_dependency(str(DATAFLOW_YAML))
        container = nodes.container()
        self.state.nested_parse(StringList(rst.splitlines(), source=str(DATAFLOW_YAML)), self.content_offset, container)
        return container.children


def _stage_links(names: list[str]) -> str:
    return ", ".join(f":doc:`{n} </stages/{n.split('.')[0]}>`" for n in names)


class DataflowStage(_YamlDirective):
    """``.. dataflow-stage:: NAME`` -- a field list of one stage of the data flow."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in _STAGES:
            raise self.error(f"dataflow-stage: {name!r} is not a stage of dataflow.yaml ({sorted(_STAGES)})")
        s = _STAGES[name]
        edges = _DATA.get("edges") or []
        fed_by = [f"{_stage_links([e['from']])} ({e['product']})" for e in edges if e["to"] == name]
        fed_by += [f"*{i['name']}* ({i['product']})" for i in _DATA.get("inputs") or [] if name in i["feeds"]]
        feeds = [f"{_stage_links([e['to']])} ({e['product']})" for e in edges if e["from"] == name]
        module = s.get("module", f"lsstdrp.{s['subpackage']}")
        fields = [
            f":Stage: ``{name}`` (:mod:`{module}`)",
            f":Consumes: {'; '.join(s['consumes'])}",
            f":Produces: {'; '.join(s['produces'])}",
            f":Sequence point: {s['sequence_point']}",
            f":Fed by: {'; '.join(fed_by) or '--'}",
            f":Feeds: {'; '.join(feeds) or '-- (end product)'}",
        ]
        for it in _DATA.get("iterations") or []:
            if name in it["stages"]:
                other = [n for n in it["stages"] if n != name][0]
                fields.append(f":Iterates with: {_stage_links([other])} ({it['times']} passes) -- {it['reason']}")
        if s.get("in_design_table") is False:
            fields.append(":Note: a preprocessing stage of the DRP data-flow notes; not a row of the design's stage table")
        return self._render("\n".join(fields))


class DataflowTable(_YamlDirective):
    """``.. dataflow-table::`` -- every stage as one row of a list-table."""

    def run(self) -> list[nodes.Node]:
        rows = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 14 30 36 20",
            "",
            "   * - stage",
            "     - consumes",
            "     - produces",
            "     - sequence point",
        ]
        for s in _DATA["stages"]:
            rows += [
                f"   * - :doc:`{s['name']} </stages/{s['subpackage']}>`",
                f"     - {'; '.join(s['consumes'])}",
                f"     - {'; '.join(s['produces'])}",
                f"     - {s['sequence_point']}",
            ]
        rows.append("")
        for it in _DATA.get("iterations") or []:
            rows.append(f"- **{it['label']}** ({it['times']} passes): {it['reason']}")
        return self._render("\n".join(rows))


class DataflowGraph(_YamlDirective):
    """``.. dataflow-graph::`` -- the rendered SVG when graphviz exists, and the DOT source."""

    def run(self) -> list[nodes.Node]:
        if _HAVE_SVG:
            head = [".. image:: /_build/generated/dataflow.svg", "   :alt: DRP data-flow graph", "   :width: 100%", ""]
        else:
            head = [
                ".. note::",
                "",
                "   graphviz's ``dot`` was not on PATH when these pages were built, so the",
                "   graph is shown as its DOT source; render it with",
                "   ``python docs/dataflow_graph.py`` after installing graphviz.",
                "",
            ]
        body = [".. literalinclude:: /_build/generated/dataflow.dot", "   :language: dot", "   :caption: dataflow.dot"]
        return self._render("\n".join(head + body))


# -- re-exported constants --------------------------------------------------------------
# Public constants live in private modules (``core/_schema.py``) with a ``#:`` doc comment
# and are re-exported by the subpackage's ``__init__``. autodoc looks for the comment only
# in the re-exporting module and skips them; ``.. public-constants::`` lists them with
# the comment found in the defining module.
def _attr_doc(obj: object, name: str) -> list[str] | None:
    import sys

    from sphinx.pycode import ModuleAnalyzer

    sentinel = object()
    for modname, module in list(sys.modules.items()):
        if not modname.startswith("lsstdrp.") or getattr(module, name, sentinel) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # no source (builtins, namespace packages)
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return None


class PublicConstants(SphinxDirective):
    """``.. public-constants:: MODULE`` -- every constant in ``MODULE.__all__``.

    Rendered as ``py:data`` entries with the ``#:`` doc comment of the defining module
    and the value, unless its repr is long (the big registries are described, not
    dumped).
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        import importlib
        import inspect

        modname = self.arguments[0]
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # automodule reports the same failure as a warning
            return [self.state.document.reporter.warning(f"public-constants: cannot import {modname}: {exc}")]
        rst: list[str] = []
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if callable(obj) or inspect.ismodule(obj):
                continue
            rst += [f".. py:data:: {name}", f"   :module: {modname}"]
            value = repr(obj)
            if len(value) <= 80:
                rst.append(f"   :value: {value}")
            rst.append("")
            doc = _attr_doc(obj, name) or []
            if len(value) > 80 and hasattr(obj, "__len__"):
                doc = [*doc, "", f"A {type(obj).__name__} with {len(obj)} entries."]
            rst += [f"   {line}" if line else "" for line in doc]
            rst.append("")
        container = nodes.container()
        self.state.nested_parse(StringList(rst, source=modname), self.content_offset, container)
        return container.children


class StageStatus(SphinxDirective):
    """``.. stage-status:: MODULE`` -- what a subpackage offers now, read from the code.

    A subpackage whose docstring says "Not built yet" is reported as such; otherwise its
    ``__all__`` is listed with links to the API page, so a stage page never claims less
    (or more) than the package holds.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        import importlib

        modname = self.arguments[0]
        api = f":doc:`/api/{modname.split('.', 1)[1]}`"
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            return [self.state.document.reporter.warning(f"stage-status: cannot import {modname}: {exc}")]
        if "Not built yet" in (module.__doc__ or ""):
            rst = [
                f"**Not built yet.** :mod:`{modname}` holds only its description ({api}); nothing",
                "in the scope above is an API yet.",
            ]
        else:
            names = list(getattr(module, "__all__", []))
            rst = [
                f"Available now in :mod:`{modname}` ({len(names)} public names; details in {api}):",
                "",
                ", ".join(f":obj:`~{modname}.{n}`" for n in names) + ".",
                "",
                "Parts of the scope not listed here are still to come.",
            ]
        container = nodes.container()
        self.state.nested_parse(StringList(rst, source=modname), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("stage-status", StageStatus)
    app.add_directive("public-constants", PublicConstants)
    app.connect("builder-inited", _generate_graph)
    app.add_directive("dataflow-stage", DataflowStage)
    app.add_directive("dataflow-table", DataflowTable)
    app.add_directive("dataflow-graph", DataflowGraph)
    return {"parallel_read_safe": True}
