"""The fusion methods, one registration each: the config's names, the classes, and how to build a layer.

The names live in :data:`fusionlab.config.FUSION_METHODS` (what a config, the CLI and the dashboard pickers
accept); each name maps to the class whose ``method`` it is, checked when this module is imported, so a name
without a class (or a class without a name) fails at once instead of falling back to another method.

What a method *is* — whether it learns its weights, has heads, uses a temperature, has a value projection,
weighs every token alike — is declared on its class (:class:`~fusionlab.fusion.base.FusionLayer`), and every
view reads it from there (:func:`fusion_class`), never from the method's name. :func:`register_fusion` adds a
method at run time; :func:`fusion_methods` is what pickers offer, read when they are drawn.
"""

from __future__ import annotations

from fusionlab import config
from fusionlab.config import FUSION_METHODS, FusionConfig
from fusionlab.fusion.attention import AttentionFusion
from fusionlab.fusion.average import AverageFusion
from fusionlab.fusion.base import FusionLayer
from fusionlab.fusion.weighted import WeightedFusion

FUSION_CLASSES: dict[str, type[FusionLayer]] = {
    cls.method: cls for cls in (AttentionFusion, WeightedFusion, AverageFusion)
}
if tuple(FUSION_CLASSES) != FUSION_METHODS:  # pragma: no cover - a programming error, caught by any import
    raise ImportError(f"fusion classes {tuple(FUSION_CLASSES)} do not match FUSION_METHODS {FUSION_METHODS}")

BUILTIN_METHODS = tuple(FUSION_CLASSES)


def fusion_methods() -> tuple[str, ...]:
    """Every registered method's name, in registration order (the pickers' choices)."""
    return tuple(FUSION_CLASSES)


def learned_weight_methods() -> tuple[str, ...]:
    """Registered methods whose weights over adapters are learned: the ones worth showing as what a fusion
    chose (read when asked, so a method registered at run time is among them)."""
    return tuple(name for name, cls in FUSION_CLASSES.items() if cls.learns_weights)


def register_fusion(cls: type[FusionLayer]) -> type[FusionLayer]:
    """Add a fusion method (a :class:`FusionLayer` subclass with its own ``method`` name); usable as a decorator.

    Configs accept the name from then on, and the composition lab, the Train page and the Playground offer it.
    """
    if not (isinstance(cls, type) and issubclass(cls, FusionLayer)) or cls.method in ("", "base"):
        raise ValueError(f"{cls!r} is not a FusionLayer subclass with a method name of its own")
    if cls.method in FUSION_CLASSES and FUSION_CLASSES[cls.method] is not cls:
        raise ValueError(f"fusion method {cls.method!r} is already registered by {FUSION_CLASSES[cls.method]!r}")
    FUSION_CLASSES[cls.method] = cls
    config.FUSION_METHODS = fusion_methods()  # what FusionConfig validates against
    return cls


def unregister_fusion(method: str) -> None:
    """Remove a method added by :func:`register_fusion` (the built-in ones stay)."""
    if method in BUILTIN_METHODS:
        raise ValueError(f"{method!r} is a built-in fusion method")
    FUSION_CLASSES.pop(method, None)
    config.FUSION_METHODS = fusion_methods()


def fusion_class(method: str) -> type[FusionLayer]:
    """The class of fusion ``method``; ``ValueError`` naming the known methods for any other name."""
    try:
        return FUSION_CLASSES[method]
    except KeyError:
        raise ValueError(f"unknown fusion method {method!r}; known: {', '.join(FUSION_CLASSES)}") from None


def build_fusion(config: FusionConfig, hidden_size: int) -> FusionLayer:
    """One fusion layer over ``config.adapter_names`` for states of size ``hidden_size``."""
    return fusion_class(config.fusion_method).from_config(config, hidden_size)
