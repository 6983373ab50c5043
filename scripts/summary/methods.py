"""Method names and row order, from the method classes (`distiller_zoo.METHODS`: `display_name`,
`table_order`); raw --distill names when the registry cannot be imported."""
from scripts.summary.runs import _number

_registry = None          # {name: Distiller subclass}, read once
_registry_problem = None  # why distiller_zoo could not be read (raw names are used then)


def method_classes():
    """`distiller_zoo.METHODS`, imported on first use; {} when it cannot be imported (e.g.
    torch missing), so the tables still come out, with the methods' raw names."""
    global _registry, _registry_problem
    if _registry is None:
        try:
            from distiller_zoo import METHODS
            _registry, _registry_problem = dict(METHODS), None
        except Exception as e:  # ImportError, or a method file broken mid-edit: still summarise
            _registry, _registry_problem = {}, f"{type(e).__name__}: {e}"
    return _registry


def registry_problem():
    """Why the registry could not be read (None when it was), after reading it."""
    method_classes()
    return _registry_problem


def method_name(distill):
    cls = method_classes().get(distill)
    return str(getattr(cls, "display_name", None) or distill) if cls is not None else str(distill)


def method_order(distill):
    """Sort key of a method's rows: the class's `table_order`, then its name; methods the
    registry does not know (e.g. from an older run) last, by raw name."""
    cls = method_classes().get(distill)
    if cls is None:
        return (1, 0, str(distill))
    order = _number(getattr(cls, "table_order", 1000))
    return (0, 1000 if order is None else order, str(distill))
