from jaxmia._src.attacks import registry as _registry
from jaxmia._src.attacks.registry import (
    ENTRY_POINTS,
    Attack,
    AttackInputs,
    PoolSignals,
    Queries,
    Scores,
    get,
    names,
    register,
    unregister,
)

__doc__ = _registry.__doc__  # written once, beside the declarations

__all__ = [
    "ENTRY_POINTS",
    "Attack",
    "AttackInputs",
    "PoolSignals",
    "Queries",
    "Scores",
    "get",
    "names",
    "register",
    "unregister",
]
