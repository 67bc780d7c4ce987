"""The attack registry: every attack jaxmia can run in an audit, each declared once.

An :class:`Attack` is a small frozen declaration that sits beside the attack's array
function: its name, the signals it reads under each access level, what else it needs of
the pool and the target (LiRA's per-query statistic, the logits for RMIA's temperature,
label answers to perturbed queries), whether it needs IN models (online), whether it
calibrates a threshold on the shadow models, and ``score``: a function from one target's
:class:`AttackInputs` to its ``(m,)`` scores. The audit derives everything else from the
registry: the ``--attacks`` choices and TOML check, the signals it extracts, the attacks
it runs by default, the online set, the dispatch, the protocol tests.

An attack's own settings (RMIA's ``rmia_gamma``, the label-only attack's
``label_queries``) are declared beside it too: :attr:`Attack.options` is a frozen
dataclass of :func:`jaxmia.settings.opt` fields, a :class:`jaxmia.settings.Section`, and
each field becomes a flat setting of the audit (``AuditConfig(rmia_gamma=3.0)``, the flag
``--rmia-gamma``, the TOML key, ``metrics.json``'s ``"config"``, a study factor), checked
by that section and read by the attack as ``inputs.settings.rmia_gamma``.

Third-party code registers an attack without editing jaxmia::

    @dataclasses.dataclass(frozen=True)
    class MyOptions(settings.Section):
        my_scale: int = settings.opt(1, "my_loss's score multiplier", b=settings.POS)

    def score(inputs: attacks.AttackInputs) -> attacks.Scores:
        loss = inputs.target["loss"][inputs.candidates]
        scale = inputs.settings.my_scale  # an option: --my-scale, my_scale in TOML
        return attacks.Scores(-loss * scale, threshold=None)  # (m,), higher = member

    my_loss = attacks.Attack("my_loss", score, signals=("loss",), default=False, options=MyOptions)
    attacks.register(my_loss)
    jaxmia.audit.run(AuditConfig(attacks=("my_loss", "lira_online"), my_scale=2))

and ``jaxmia audit --attacks my_loss`` finds it when its package declares the entry point
``[project.entry-points."jaxmia.attacks"] my_loss = "my_package:MY_LOSS"`` (an
:class:`Attack`); entry points are loaded the first time the registry is read.
"""

import dataclasses
import importlib.metadata
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxmia.settings import Section

__all__ = [
    "CORE_INPUTS",
    "ENTRY_POINTS",
    "READS",
    "Attack",
    "AttackInputs",
    "PoolSignals",
    "Queries",
    "Scores",
    "get",
    "names",
    "option_sections",
    "register",
    "unregister",
]

READS = frozenset({"phi", "logits", "queries"})
"""What an attack may need beyond signals: ``phi``, LiRA's logit-scaled confidence per
query (the records and their augmented views); ``logits``, the models' logits under
``probs`` access (for a softmax temperature); ``queries``, answers to perturbed inputs."""

CORE_INPUTS = ("statistic", "log_probability", "answers")
"""What an attack's array function (:attr:`Attack.core`) may take; the protocol tests
build inputs of each kind."""

ENTRY_POINTS = "jaxmia.attacks"
"""The entry-point group whose objects (:class:`Attack`) are registered on first read."""


@dataclasses.dataclass(frozen=True)
class PoolSignals:
    """The shadow pool's signals, computed once and read by every attack.

    Attributes:
      signals: ``{signal: (k, n, ...)}`` on all ``n`` records, through the access level.
      phi: ``(k, n, q)`` LiRA's logit-scaled confidence for ``q`` queries, or ``None``.
      logits: ``(k, n, c)`` the models' logits where the access level gives probability
        vectors and an attack reads them (``"logits"`` in :attr:`Attack.reads`), else
        ``None``.
      keep: ``(k, n)`` bool shadow membership.
      pool: ``(n,)`` bool records whose shadow outputs may be used.
    """

    signals: dict[str, np.ndarray]
    phi: np.ndarray | None
    logits: np.ndarray | None
    keep: np.ndarray
    pool: np.ndarray

    def without(self, t: int) -> "PoolSignals":
        """The pool less model ``t`` (leave-one-out)."""
        rows = np.arange(self.keep.shape[0]) != t
        return PoolSignals(
            signals={k: v[rows] for k, v in self.signals.items()},
            phi=None if self.phi is None else self.phi[rows],
            logits=None if self.logits is None else self.logits[rows],
            keep=self.keep[rows],
            pool=self.pool,
        )


class Queries(NamedTuple):
    """The label-only queries: ``target(x (p, ...)) -> (p, c)`` the target's outputs as
    its interface returns them, ``shadows(x, models=m) -> (m, p)`` the first ``m`` shadow
    models' labels (all with ``models=None``), and the records ``x`` ``(n, ...)``. Where
    no target is queried (:attr:`Attack.pool_wide`), ``target`` is ``None``."""

    target: Callable[[np.ndarray], np.ndarray] | None
    shadows: Callable[..., np.ndarray]
    x: np.ndarray


class Scores(NamedTuple):
    """What an attack returns for one target: ``scores`` ``(m,)`` (higher = member) and
    the decision ``threshold`` calibrated on the shadow models, or ``None`` where the
    attack calibrates none (its accuracy is then reported at the best threshold on the
    target's own scores, marked optimistic)."""

    scores: np.ndarray
    threshold: float | None


@dataclasses.dataclass
class AttackInputs:
    """What an attack reads for one target.

    Attributes:
      shadows: the shadow pool's signals (without the target, in leave-one-out).
      target: ``{signal: (n, ...)}`` the target's signals on every record, through the
        access level (empty where no target is given: :attr:`Attack.pool_wide`).
      target_phi: ``(n, q)`` the target's logit-scaled confidence per query, or ``None``.
      target_logits: ``(n, c)`` the target's logits under ``probs`` access, or ``None``.
      candidates: ``(m,)`` indices of the records to score.
      labels: ``(n,)`` int labels of every record.
      num_classes: ``c``.
      settings: the audit's settings, read by attribute (``settings.seed``,
        ``settings.effective_access``, ``settings.rmia_gamma``, ...:
        :class:`jaxmia.audit.AuditConfig`).
      queries: the label-only queries (:class:`Queries`), or ``None``.
      fitted: what :attr:`Attack.fit` returned on these shadows, or ``None``.
      cache: values one attack computes and another reads (shared by the attacks of one
        target; in leave-one-out also what :attr:`Attack.pool_wide` cut for it).
      notes: receives the settings chosen on the way (:meth:`note`).
    """

    shadows: PoolSignals
    target: Mapping[str, np.ndarray]
    target_phi: np.ndarray | None
    target_logits: np.ndarray | None
    candidates: np.ndarray
    labels: np.ndarray
    num_classes: int
    settings: Any
    queries: Queries | None = None
    fitted: Any = None
    cache: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def note(self, text: str) -> None:
        """Records ``text`` among the notes (once)."""
        if text not in self.notes:
            self.notes.append(text)

    @property
    def keep(self) -> np.ndarray:
        """``(k, m)`` bool shadow membership of the candidates."""
        return self.shadows.keep[:, self.candidates]


Signals = tuple[str, ...] | Callable[[str], tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class Attack:
    """One attack as the audit runs it.

    Attributes:
      name: the name in ``--attacks``, TOML, ``metrics.json`` and the report.
      score: ``AttackInputs -> Scores``: the ``(m,)`` scores of one target's candidates
        and the threshold calibrated on the shadows (``None`` if not ``calibrated``).
      signals: the signals of :mod:`jaxmia.signals` it reads (a tuple, or a function of
        the access level); an access level that does not provide them excludes the attack.
      reads: what else it needs, among :data:`READS`.
      online: whether it needs shadow models trained on the candidates (IN models), which
        the disjoint scheme lacks.
      calibrated: whether ``score`` returns a threshold calibrated on the shadow models.
      default: whether an audit runs it when ``--attacks`` is not given.
      background: whether it runs in a thread beside the other attacks (long, light
        work, such as training an attack classifier or querying perturbed inputs).
      fit: ``(shadows, labels, num_classes, settings) -> fitted``: work on the shadow pool
        alone, started as soon as the pool's signals exist (before the target's) and
        passed to ``score`` as :attr:`AttackInputs.fitted`; or ``None``.
      pool_wide: in leave-one-out (each pool model a target against the others),
        ``inputs -> (t -> {key: value})``: computed once on the whole pool (``inputs``
        without a target), it gives target ``t``'s entries of
        the cache of :class:`AttackInputs` -- the same values as computing them for ``t`` alone;
        or ``None``.
      statistic: what it thresholds or models, for the report and the API reference.
      paper: the paper it comes from.
      core: the array function with the protocol of :mod:`jaxmia.attacks`
        (``core(target_stat, shadow_stats, keep, **options) -> (m,)``, traceable under
        ``jax.jit`` and ``jax.vmap``), or ``None`` (an attack that trains a model).
      core_input: what ``core`` takes, one of :data:`CORE_INPUTS`: ``"statistic"``
        (``(m,)`` real), ``"log_probability"`` (``(m,)`` log-probabilities, and the
        population ``z`` as the keyword arguments ``target_log_p_z``, ``ref_log_p_z``,
        ``keep_z`` it accepts) or ``"answers"`` (``(m, q)`` bool: correct answers to
        ``q`` queries).
      options: its settings, or ``None``: a frozen dataclass inheriting
        :class:`jaxmia.settings.Section` whose fields are :func:`jaxmia.settings.opt`
        settings (help, bounds, choices). Each field is a flat setting of the audit
        (:class:`jaxmia.audit.AttackConfig`: its flag, TOML key, ``metrics.json``
        entry and study factor), checked by the class, and ``score`` and ``fit`` read
        it from the settings they are given (``inputs.settings.rmia_gamma``). The attacks
        of one family share one class (RMIA online, offline and Attack-P:
        :class:`jaxmia._src.attacks.rmia.RMIAOptions`); a setting declared by two classes is
        refused by :func:`register`.
    """

    name: str
    score: Callable[[AttackInputs], Scores]
    signals: Signals
    reads: frozenset[str] = frozenset()
    online: bool = False
    calibrated: bool = False
    default: bool = True
    background: bool = False
    fit: Callable[..., Any] | None = None
    pool_wide: Callable[[AttackInputs], Callable[[int], dict]] | None = None
    statistic: str = ""
    paper: str = ""
    core: Callable[..., Any] | None = None
    core_input: str | None = None
    options: type[Section] | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"an attack's name must be an identifier, got {self.name!r}")
        object.__setattr__(self, "reads", frozenset(self.reads))
        unknown = sorted(self.reads - READS)
        if unknown:
            raise ValueError(
                f"attack {self.name!r}: unknown reads {', '.join(unknown)}; "
                f"choose from {', '.join(sorted(READS))}"
            )
        if not callable(self.score):
            raise ValueError(f"attack {self.name!r}: score must be callable")
        if (self.core is None) != (self.core_input is None):
            raise ValueError(f"attack {self.name!r}: give core and core_input together")
        if self.core_input is not None and self.core_input not in CORE_INPUTS:
            raise ValueError(
                f"attack {self.name!r}: core_input must be one of {', '.join(CORE_INPUTS)}, "
                f"got {self.core_input!r}"
            )
        if self.options is not None:
            _check_options(self.name, self.options)

    def needs(self, access: str) -> tuple[str, ...]:
        """The signals the attack reads under ``access``."""
        return tuple(self.signals(access) if callable(self.signals) else self.signals)


def _check_options(name: str, options: Any) -> None:
    """Refuses, naming the attack ``name``, ``options`` that are not a frozen
    :class:`~jaxmia.settings.Section` dataclass of :func:`~jaxmia.settings.opt` fields
    whose defaults pass their own checks."""
    what = f"attack {name!r}: options"
    if not (
        isinstance(options, type)
        and dataclasses.is_dataclass(options)
        and issubclass(options, Section)
        and options.__dataclass_params__.frozen
    ):
        raise ValueError(
            f"{what} must be a frozen dataclass inheriting jaxmia.settings.Section, got {options!r}"
        )
    for field in dataclasses.fields(options):
        if "help" not in field.metadata:
            raise ValueError(f"{what}: {field.name} is not made by jaxmia.settings.opt")
    try:
        options()
    except (TypeError, ValueError) as e:  # a default its own checks refuse
        raise ValueError(f"{what}: the defaults of {options.__name__}: {e}") from None


def _names(options: type[Section]) -> tuple[str, ...]:
    """The settings an :attr:`Attack.options` class declares, in declaration order."""
    return tuple(field.name for field in dataclasses.fields(options))


_registry: dict[str, Attack] = {}
_lock = threading.Lock()
_plugins_loaded = False


def register(attack: Attack, *, replace: bool = False) -> Attack:
    """Adds ``attack`` to the registry (after those already there) and returns it.

    Raises:
      ValueError: an attack of that name is registered (unless ``replace``: it then takes
        the old one's place), ``attack`` is not an :class:`Attack`, or one of its
        options is a setting another registered attack declares in another class (one
        name, two meanings; attacks that share a setting share its class).
    """
    if not isinstance(attack, Attack):
        raise ValueError(f"register takes an Attack, got {attack!r}")
    with _lock:
        if attack.name in _registry and not replace:
            raise ValueError(f"an attack named {attack.name!r} is registered already")
        _refuse_redeclared(attack)
        _registry[attack.name] = attack
    return attack


def _refuse_redeclared(attack: Attack) -> None:
    """Refuses ``attack`` if a registered attack (but the one it replaces) declares one of
    its options in another class."""
    if attack.options is None:
        return
    mine = set(_names(attack.options))
    for other in _registry.values():
        if other.name == attack.name or other.options in (None, attack.options):
            continue
        shared = sorted(mine.intersection(_names(other.options)))
        if shared:
            raise ValueError(
                f"attack {attack.name!r}: option {shared[0]!r} is declared already by "
                f"attack {other.name!r} ({other.options.__qualname__}); share that class "
                "or rename the option"
            )


def unregister(name: str) -> Attack:
    """Removes the attack ``name`` from the registry and returns it.

    Raises:
      KeyError: no attack of that name is registered.
    """
    with _lock:
        if name not in _registry:
            raise KeyError(f"no attack named {name!r} is registered")
        return _registry.pop(name)


def names(*, default_only: bool = False) -> tuple[str, ...]:
    """The registered attacks' names, in registration order (jaxmia's own first); with
    ``default_only`` those run when no attacks are asked for."""
    _load_plugins()
    return tuple(name for name, a in _registry.items() if a.default or not default_only)


def option_sections() -> tuple[type[Section], ...]:
    """The :attr:`Attack.options` classes of the registered attacks, each once, in
    registration order (jaxmia's own first): the attack options of the audit's settings,
    in the order of ``metrics.json``."""
    _load_plugins()
    declared = [attack.options for attack in list(_registry.values())]
    return tuple(dict.fromkeys(options for options in declared if options is not None))


def get(name: str) -> Attack:
    """The attack ``name``.

    Raises:
      KeyError: no attack of that name is registered (the message lists those that are).
    """
    _load_plugins()
    try:
        return _registry[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; choose from {', '.join(_registry)}") from None


def _load_plugins() -> None:
    """Registers the :class:`Attack` objects of the :data:`ENTRY_POINTS` group, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    with _lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        found = list(importlib.metadata.entry_points(group=ENTRY_POINTS))
    for point in found:
        try:
            attack = point.load()
        except Exception as e:  # a broken plugin is named, not a traceback from importlib
            raise ValueError(
                f"entry point {point.name!r} of {ENTRY_POINTS!r} ({point.value}) failed to "
                f"load: {type(e).__name__}: {e}"
            ) from e
        if not isinstance(attack, Attack):
            raise ValueError(
                f"entry point {point.name!r} of {ENTRY_POINTS!r} ({point.value}) is not an "
                f"Attack: {attack!r}"
            )
        if attack.name not in _registry:
            register(attack)
