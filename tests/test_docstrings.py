"""Every public function of a built subpackage has a numpydoc docstring with the sections
its signature calls for (STYLE.md habit 9)."""

import importlib
import inspect

import pytest

import lsstdrp


#: Public modules below a subpackage (stages that live inside another's package).
NESTED = ("isr.calibs",)


def _public_callables():
    for name in (*lsstdrp.SUBPACKAGES, *NESTED):
        mod = importlib.import_module(f"lsstdrp.{name}")
        for attr in getattr(mod, "__all__", []):
            obj = getattr(mod, attr)
            if inspect.isfunction(obj):
                yield f"lsstdrp.{name}.{attr}", obj
            elif inspect.isclass(obj):
                yield f"lsstdrp.{name}.{attr}", obj
                for meth_name, meth in vars(obj).items():
                    if meth_name.startswith("_") or not inspect.isfunction(meth):
                        continue
                    yield f"lsstdrp.{name}.{attr}.{meth_name}", meth


CALLABLES = sorted(_public_callables(), key=lambda t: t[0])


@pytest.mark.parametrize("qualname, obj", CALLABLES, ids=[q for q, _ in CALLABLES])
def test_public_docstring(qualname, obj):
    doc = inspect.getdoc(obj)
    assert doc and len(doc.strip()) > 20, f"{qualname} has no docstring"
    if inspect.isclass(obj):
        return
    params = [p for p in inspect.signature(obj).parameters.values()
              if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    is_method = "." in qualname.split("lsstdrp.", 1)[1].split(".", 1)[1]
    if params and not is_method:
        assert "Parameters\n----------" in doc, f"{qualname}: no Parameters section"
    returns_none = inspect.signature(obj).return_annotation in (None, "None")
    if not is_method and not returns_none:
        assert "Returns\n-------" in doc or "Yields\n------" in doc, f"{qualname}: no Returns section"
