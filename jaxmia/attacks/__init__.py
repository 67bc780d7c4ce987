from jaxmia._src import attacks as _attacks
from jaxmia._src.attacks import registry
from jaxmia._src.attacks.checks import AttackInputError
from jaxmia._src.attacks.classifier import ShokriConfig, shokri
from jaxmia._src.attacks.lira import LiRAError, augment_images, lira_offline, lira_online
from jaxmia._src.attacks.registry import (
    Attack,
    AttackInputs,
    PoolSignals,
    Queries,
    Scores,
    register,
    unregister,
)
from jaxmia._src.attacks.rmia import (
    RMIACalibration,
    calibrate_rmia,
    log_probs,
    rmia_offline,
    rmia_online,
)
from jaxmia._src.attacks.robustness import label_only, perturb_inputs, query_correctness
from jaxmia._src.attacks.threshold import (
    calibrate_threshold,
    confidence,
    entropy,
    loss,
    modified_entropy,
)

__doc__ = _attacks.__doc__  # the overview and the table of registered attacks, written once

__all__ = [
    "Attack",
    "AttackInputError",
    "AttackInputs",
    "LiRAError",
    "PoolSignals",
    "Queries",
    "RMIACalibration",
    "Scores",
    "ShokriConfig",
    "augment_images",
    "calibrate_rmia",
    "calibrate_threshold",
    "confidence",
    "entropy",
    "label_only",
    "lira_offline",
    "lira_online",
    "log_probs",
    "loss",
    "modified_entropy",
    "perturb_inputs",
    "query_correctness",
    "register",
    "registry",
    "rmia_offline",
    "rmia_online",
    "shokri",
    "unregister",
]
