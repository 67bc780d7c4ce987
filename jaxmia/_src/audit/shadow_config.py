"""Shadow quality: settings that train the shadow models unlike the target.

LiRA and RMIA (Carlini et al. 2022; Zarifzadeh et al. 2024) assume the attacker trains
shadow models like the target. :class:`ShadowConfig` lets an audit measure what happens
when the attacker guesses wrong. Each setting changes the shadows, never the target; its
default ``None`` means "as the target", and then the audit is the one without it, bit for
bit. A setting equal to the target's (``shadow_width`` equal to ``hidden``) is no
difference either.

* ``shadow_width``, ``shadow_depth``: the shadows' MLP hidden widths (as ``hidden``) and
  number of hidden layers. A depth alone keeps the target's widths, cut to ``depth``
  layers or extended by repeating the last; with one width, that width is repeated
  ``depth`` times; several widths must number ``depth``.
* ``shadow_epochs``, ``shadow_lr``: the shadows' epochs and Adam learning rate.
* ``shadow_data_size`` = ``f`` in (0, 1]: shadow ``i`` trains on ``round(f * m_i)`` (at
  least one) of its ``m_i`` members; the others become its non-members in the keep
  matrix, so the attacks see the truth. Which members: drawn row by row so that every
  record stays a member of about the fraction ``f`` of the shadows that had it (seeds
  ``[seed, 41, i]``; :func:`shadow_keep`), so that the online attacks keep IN models.
* ``shadow_shift`` = ``s`` in [0, 1], of kind ``shadow_shift_kind``:

  - ``prior`` (a class-prior shift): a fixed random half of the classes
    (``floor(c / 2)``, at least one, drawn with ``[seed, 43]``) are under-represented
    in the shadows' data: shadow ``i`` drops ``round(s * m)`` of its ``m`` members of
    those classes (balanced over the records as above, seeds ``[seed, 43, i]``), which
    become its non-members; ``s = 1`` removes those classes from the shadows' training
    sets (then the online attacks, which need IN models, are refused).
  - ``features`` (a covariate shift): a fixed random ``round(s * d)`` of the ``d``
    input features (flattened; drawn with ``[seed, 47]``) are zero in every input the
    shadows see, in training and when queried; the target is trained and queried on
    the records as they are.

  ``s = 0`` shifts nothing.

Leave-one-out (``targets > 0``), where the pool models are the targets, refuses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxmia.settings import POS, POSITIVE_REAL, ConfigError, Range, Section, opt

__all__ = [
    "SHIFT_KINDS",
    "ShadowConfig",
    "check_members",
    "check_with",
    "describe",
    "differences",
    "shadow_epochs",
    "shadow_hidden",
    "shadow_inputs",
    "shadow_keep",
    "shadow_lr",
    "shifted_classes",
    "shifted_features",
    "spec",
]

SHIFT_KINDS = ("prior", "features")
"""Kinds of ``shadow_shift``: a class-prior shift, or features zeroed (module docstring)."""


@dataclasses.dataclass(frozen=True)
class ShadowConfig(Section):
    """How the shadow models train unlike the target (module docstring); ``None``: as the
    target."""

    shadow_width: tuple[int, ...] | None = opt(
        None,
        "the shadows' MLP hidden widths, e.g. 64 or 256,256 (default: the target's)",
        "always",
        b=POS,
    )
    shadow_depth: int | None = opt(
        None, "the shadows' number of hidden layers (default: the target's)", "always", b=POS
    )
    shadow_epochs: int | None = opt(
        None, "the shadows' training epochs (default: the target's)", "always", b=POS
    )
    shadow_lr: float | None = opt(
        None,
        "the shadows' Adam learning rate (default: the target's)",
        "always",
        b=POSITIVE_REAL,
    )
    shadow_data_size: float | None = opt(
        None,
        "fraction in (0, 1] of its members each shadow trains on",
        "always",
        b=Range(0, 1, open_low=True),
    )
    shadow_shift: float | None = opt(
        None,
        "strength in [0, 1] of the shadows' data shift (see --shadow-shift-kind)",
        "always",
        b=Range(0, 1),
    )
    shadow_shift_kind: str = opt(
        "prior",
        "prior: drop shadow members of half the classes; features: zero features",
        "always",
        c=SHIFT_KINDS,
    )

    def __post_init__(self):
        super().__post_init__()
        width, depth = self.shadow_width, self.shadow_depth
        if width is not None and depth is not None and len(width) > 1 and len(width) != depth:
            raise ConfigError(
                f"shadow_depth ({depth}) disagrees with the {len(width)} widths of "
                "shadow_width; give one width to repeat, or leave shadow_depth out"
            )


def _given(config) -> list[str]:
    """The shadow settings set (not ``None``)."""
    names = [f.name for f in dataclasses.fields(ShadowConfig) if f.name != "shadow_shift_kind"]
    return [n for n in names if getattr(config, n) is not None]


def check_with(config) -> None:
    """Refuses shadow settings in leave-one-out (the pool models are the targets).

    Args:
      config: an :class:`jaxmia.audit.AuditConfig`.
    """
    given = _given(config)
    if config.targets and given:
        raise ConfigError(
            f"{', '.join(given)}: leave-one-out (targets > 0) trains the targets in the "
            "shadow pool, so shadows cannot differ from them; drop these settings or targets"
        )


def shadow_hidden(config) -> tuple[int, ...]:
    """The shadows' MLP hidden widths (module docstring): ``shadow_width`` and
    ``shadow_depth`` over the target's ``hidden``."""
    hidden = config.hidden if config.shadow_width is None else config.shadow_width
    depth = config.shadow_depth
    if depth is None:
        return tuple(hidden)
    return tuple(hidden[:depth]) + (hidden[-1],) * max(0, depth - len(hidden))


def shadow_epochs(config) -> int:
    """The shadows' training epochs."""
    return config.epochs if config.shadow_epochs is None else config.shadow_epochs


def shadow_lr(config) -> float:
    """The shadows' Adam learning rate."""
    return config.learning_rate if config.shadow_lr is None else config.shadow_lr


def _shift(config) -> float:
    return config.shadow_shift or 0.0


def differences(config) -> dict[str, Any]:
    """``{what: the shadows' value}`` wherever the shadows train unlike the target:
    ``hidden``, ``epochs``, ``learning_rate``, ``data_size``, ``shift``
    (``{"kind", "strength"}``); empty when they train alike (the key ``"shadows"`` of a
    pool's spec and ``shadow_differences`` of ``metrics.json``)."""
    out: dict[str, Any] = {}
    if shadow_hidden(config) != tuple(config.hidden):
        out["hidden"] = list(shadow_hidden(config))
    if shadow_epochs(config) != config.epochs:
        out["epochs"] = shadow_epochs(config)
    if shadow_lr(config) != config.learning_rate:
        out["learning_rate"] = shadow_lr(config)
    if config.shadow_data_size is not None and config.shadow_data_size < 1:
        out["data_size"] = config.shadow_data_size
    if _shift(config) > 0:
        out["shift"] = {"kind": config.shadow_shift_kind, "strength": config.shadow_shift}
    return out


def spec(config) -> dict[str, Any]:
    """``{"shadows": differences(config)}`` where the shadows train unlike the target,
    else empty: what a kept pool's spec adds (:func:`jaxmia._src.audit.config.pool_spec`), so a
    pool of other shadow settings is refused and the default spec is unchanged."""
    d = differences(config)
    return {"shadows": d} if d else {}


def describe(config) -> dict[str, str]:
    """The :func:`differences` as phrases for the report, by the same keys, e.g.
    ``{"hidden": "hidden widths (64,) (target (128,))"}``; empty when the shadows train
    like the target."""
    d, out = differences(config), {}
    if "hidden" in d:
        out["hidden"] = f"hidden widths {tuple(d['hidden'])} (target {tuple(config.hidden)})"
    if "epochs" in d:
        out["epochs"] = f"{d['epochs']} epochs (target {config.epochs})"
    if "learning_rate" in d:
        lr = d["learning_rate"]
        out["learning_rate"] = f"learning rate {lr:g} (target {config.learning_rate:g})"
    if "data_size" in d:
        out["data_size"] = f"data: {d['data_size']:g} of each shadow's members trained on"
    if "shift" in d:
        s = d["shift"]["strength"]
        out["shift"] = (
            f"class-prior shift {s:g} (members of half the classes dropped at rate {s:g})"
            if d["shift"]["kind"] == "prior"
            else f"feature shift {s:g} (that fraction of the input features zeroed)"
        )
    return out


def shifted_classes(config, num_classes: int) -> np.ndarray:
    """``(floor(c / 2),)`` sorted classes (at least one) under-represented by the prior
    shift, drawn with the seed ``[seed, 43]``."""
    rng = np.random.default_rng([config.seed, 43])
    return np.sort(rng.choice(num_classes, size=max(1, num_classes // 2), replace=False))


def shifted_features(config, d: int) -> np.ndarray:
    """``(round(s * d),)`` sorted indices of the flattened input features zeroed by the
    features shift of strength ``s``, drawn with the seed ``[seed, 47]``."""
    rng = np.random.default_rng([config.seed, 47])
    return np.sort(rng.permutation(d)[: round(_shift(config) * d)])


def _thin(
    keep: np.ndarray, eligible: np.ndarray, fraction: float, count, seed: list[int]
) -> np.ndarray:
    """``keep`` with row ``i``'s eligible members cut to ``count(m_i)`` of its ``m_i``:
    greedily, row by row, those kept least often so far relative to ``fraction`` of the
    rows that had them (ties at random, seed ``[*seed, i]``), so that every record stays a
    member of about ``fraction`` of the shadows that had it (and keeps IN models for the
    online attacks); row ``i`` depends only on rows ``<= i`` (a grown pool keeps its
    rows)."""
    keep = np.array(keep, dtype=bool)
    seen, kept = np.zeros(keep.shape[1]), np.zeros(keep.shape[1])
    for i, row in enumerate(keep):
        members = np.flatnonzero(row & eligible)
        seen[members] += 1
        behind = kept[members] - fraction * seen[members]  # most behind first
        order = np.lexsort((np.random.default_rng([*seed, i]).random(members.size), behind))
        c = count(members.size)
        kept[members[order[:c]]] += 1
        keep[i, members[order[c:]]] = False
    return keep


def shadow_keep(config, keep: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """``(k, n)`` the shadows' keep matrix after ``shadow_data_size`` and the prior
    ``shadow_shift`` (module docstring): a subset of each row of ``keep`` (the members
    dropped balanced over the records, :func:`_thin`); ``keep`` itself when neither
    applies.

    Args:
      config: an :class:`jaxmia.audit.AuditConfig`.
      keep: ``(k, n)`` bool, the split's shadow keep matrix.
      y: ``(n,)`` labels of the records.
      num_classes: the number of classes ``c``.
    """
    d = differences(config)
    prior = "shift" in d and d["shift"]["kind"] == "prior"
    if "data_size" in d:
        f = d["data_size"]
        everyone = np.ones(keep.shape[1], bool)
        keep = _thin(keep, everyone, f, lambda m: max(1, round(f * m)), [config.seed, 41])
    if prior:
        s = _shift(config)
        shifted = np.isin(y, shifted_classes(config, num_classes))
        keep = _thin(keep, shifted, 1 - s, lambda m: m - round(s * m), [config.seed, 43])
    return keep


def check_members(keep: np.ndarray, candidates: np.ndarray, online: bool) -> None:
    """Refuses shadow settings that leave a candidate without an IN model (``online``
    attacks need one) or an OUT model, before any training.

    Args:
      keep: ``(k, n)`` the shadows' keep matrix (:func:`shadow_keep`).
      candidates: ``(m,)`` indices of the candidates.
      online: whether an online attack (LiRA, RMIA) runs.
    """
    ins = keep[:, candidates].sum(axis=0)
    for word, short in (("IN", online and ins.min() < 1), ("OUT", ins.max() >= keep.shape[0])):
        if short:
            raise ConfigError(
                f"shadow_data_size/shadow_shift leave some candidates without an {word} "
                "shadow model; use more shadows, a milder setting, or offline attacks"
            )


def shadow_inputs(config) -> Callable[[np.ndarray], np.ndarray] | None:
    """``x (b, ...) -> (b, ...)`` the inputs as the shadows see them under the features
    shift (the features of :func:`shifted_features` zeroed), or ``None`` (as they are)."""
    d = differences(config)
    if "shift" not in d or d["shift"]["kind"] != "features":
        return None

    def shifted(x: np.ndarray) -> np.ndarray:
        flat = np.array(x, dtype=np.asarray(x).dtype).reshape(len(x), -1)
        flat[:, shifted_features(config, flat.shape[1])] = 0
        return flat.reshape(np.shape(x))

    return shifted
