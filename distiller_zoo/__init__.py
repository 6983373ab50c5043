"""The distillation methods: criteria under RepDistiller's names, and one method per file.

`METHODS` maps each `--distill` name to its `Distiller` subclass; it is collected from
the method files, so adding a method is adding a file to `_METHOD_FILES`.
"""
import importlib
import inspect

from distiller_zoo._base import Batch, Distiller  # noqa: F401
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

_METHOD_FILES = ("KD", "FitNet", "AT", "SP", "CC", "VID", "RKD", "PKT", "AB", "FT", "FSP", "NST", "KDSVD",
                 "CRD", "PACKD")


def _method_modules():
    """(file name, module) of every method file, in `_METHOD_FILES` order."""
    return [(file, importlib.import_module(f"distiller_zoo.{file}")) for file in _METHOD_FILES]


def _collect():
    methods = {}
    for _, module in _method_modules():
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Distiller) and obj is not Distiller \
                    and obj.__module__ == module.__name__:
                methods[obj.name] = obj
    return methods


METHODS = _collect()


def add_method_arguments(parser):
    """Flags that belong to one method (PACKD's), added by the method's own file."""
    for file, module in _method_modules():
        add = getattr(module, f"add_{file.lower()}_arguments", None)
        if add is not None:
            add(parser)


def flags_without_effect(opt):
    """Flags given on the command line that a method accepts for compatibility but ignores,
    as {flag: reason}: each method file may list them in a `NO_EFFECT_FLAGS` dict."""
    given = {}
    for _, module in _method_modules():
        for name, reason in getattr(module, "NO_EFFECT_FLAGS", {}).items():
            if getattr(opt, name, None) is not None:
                given["--" + name] = reason
    return given
