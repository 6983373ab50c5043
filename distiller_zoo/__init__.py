"""The distillation methods: criteria under RepDistiller's names, and one method per file.

`METHODS` maps each `--distill` name to its `Distiller` subclass. It is collected from the
files of this package: every module holding a `Distiller` subclass that sets its own
`name` registers it, so adding a method is adding a file (see `distiller_zoo/base.py`).
"""
import importlib
import inspect
import pkgutil

from distiller_zoo.base import Distiller  # noqa: F401
from dataset.batch import Batch  # noqa: F401
# RepDistiller's criterion names, importable from the package as in its code.
from distiller_zoo.KD import DistillKL  # noqa: F401
from distiller_zoo.FitNet import HintLoss  # noqa: F401
from distiller_zoo.AT import Attention  # noqa: F401
from distiller_zoo.SP import Similarity  # noqa: F401
from distiller_zoo.CC import Correlation  # noqa: F401
from distiller_zoo.VID import VIDLoss  # noqa: F401
from distiller_zoo.RKD import RKDLoss  # noqa: F401
from distiller_zoo.PKT import PKT  # noqa: F401
from distiller_zoo.AB import ABLoss  # noqa: F401
from distiller_zoo.FT import FactorTransfer  # noqa: F401
from distiller_zoo.KDSVD import KDSVD  # noqa: F401
from distiller_zoo.FSP import FSP  # noqa: F401
from distiller_zoo.NST import NSTLoss  # noqa: F401
from distiller_zoo.PACKD import PACKDLoss  # noqa: F401

# Modules of this package that hold no method.
_NOT_METHOD_FILES = {"base"}


def _method_classes():
    """Every Distiller subclass that names itself, from every module of this package."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NOT_METHOD_FILES:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, Distiller) and obj is not Distiller
                    and obj.__module__ == module.__name__ and "name" in vars(obj)):
                found.append(obj)
    return found


def _collect():
    classes = sorted(_method_classes(), key=lambda c: (c.table_order, c.name))
    methods = {}
    for cls in classes:
        if cls.name in methods:
            raise ImportError(f"two method classes are named '{cls.name}': {methods[cls.name].__module__} and "
                              f"{cls.__module__}; rename one")
        methods[cls.name] = cls
    return methods


METHODS = _collect()
ALIASES = {alias: cls.name for cls in METHODS.values() for alias in cls.aliases}


def method_named(name):
    """The class for a --distill name or one of its aliases; None when unknown."""
    return METHODS.get(ALIASES.get(name, name))


def add_method_arguments(parser):
    """Every method's own flags; a class that inherits `add_arguments` adds nothing twice."""
    for cls in METHODS.values():
        if "add_arguments" in vars(cls):
            cls.add_arguments(parser)


def flags_without_effect(opt):
    """Flags given that a method accepts for compatibility but ignores, as {flag: reason}."""
    given = {}
    for cls in METHODS.values():
        for name, reason in cls.no_effect_flags.items():
            if getattr(opt, name, None) is not None:
                given["--" + name] = reason
    return given


def speed_flags():
    """Method flags that change only speed or logs (left out of a run's identity)."""
    return {flag for cls in METHODS.values() for flag in (*cls.speed_flags, *cls.no_effect_flags)}
