"""Writing a ``jaxmia dp-audit`` (:func:`jaxmia.audit.run`) to disk:
dp_audit.json, report.md and dp_audit.png (epsilon lower bounds and Gaussian-DP estimates,
real and ideal, against the accountant's epsilon and what explains the gap), as one set
(:func:`jaxmia._src.audit.outputs.write_set`)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from jaxmia._src.audit import outputs
from jaxmia._src.audit.report import versions

__all__ = ["OUTPUTS", "load", "markdown", "plot", "table", "to_json", "write"]

OUTPUTS = ("dp_audit.json", "report.md", "dp_audit.png")
"""The files a dp-audit writes into its output directory."""

_COLUMNS = (
    "accountant eps (RDP)",
    "PLD eps",
    "statistic eps",
    "white-box CP",
    "ideal CP median (p10)",
    "black-box CP",
    "one-run",
    "white-box GDP estimate",
    "ideal GDP estimate median (p10)",
    "models",
    "seconds",
)


def _eps(value: float, infinite: str = "inf (no noise)") -> str:
    return infinite if math.isinf(value) else f"{value:.2f}"


def _cells(row: dict[str, Any]) -> list[str]:
    ideal = row["ideal"]
    return [
        _eps(row["accountant_epsilon"]),
        _eps(row["pld_epsilon"], "inf"),
        _eps(row["statistic_epsilon"], "inf"),
        f"{row['white_box']['clopper_pearson']:.2f}",
        f"{ideal['clopper_pearson']['median']:.2f} ({ideal['clopper_pearson']['p10']:.2f})",
        f"{row['black_box']['clopper_pearson']:.2f}",
        f"{row['one_run']['epsilon']:.2f}",
        f"{row['white_box']['gdp_estimate']:.2f}",
        f"{ideal['gdp_estimate']['median']:.2f} ({ideal['gdp_estimate']['p10']:.2f})",
        str(row["models"]),
        f"{row['seconds']:.0f}",
    ]


def _bound_count(result: dict[str, Any]) -> int:
    """The lower bounds on the trained models in the table: white-box and black-box
    Clopper-Pearson and one-run, for each epsilon."""
    return 3 * len(result["rows"])


def _gap(result: dict[str, Any]) -> list[str]:
    """Where the gap between the accountant's epsilon and the white-box bound comes from,
    at the largest finite epsilon: the RDP accountant's slack (against PLD), observing only
    the final weight (the statistic's exact epsilon), and the trial count."""
    finite = [r for r in result["rows"] if math.isfinite(r["accountant_epsilon"])]
    if not finite:
        return []
    r = max(finite, key=lambda row: row["accountant_epsilon"])
    c = result["config"]
    half = c["models"] // 2
    return [
        f"At accountant epsilon {r['accountant_epsilon']:.2f} (dp-accounting's RDP "
        f"accountant) the white-box bound is {r['white_box']['clopper_pearson']:.2f}. The gap "
        "has three parts:",
        "",
        f"- Accountant slack: the PLD accountant gives {r['pld_epsilon']:.2f} for the same "
        f"noise multiplier ({r['noise_multiplier']:.4g}), rate ({r['sample_rate']:.3g}) and "
        f"steps ({r['steps']}); the RDP accountant's conversion is loose by "
        f"{r['accountant_epsilon'] - r['pld_epsilon']:.2f}.",
        f"- Observation: the audit sees only the final weight, the sum of "
        f"Binomial({r['steps']}, {r['sample_rate']:.3g}) canary steps plus Gaussian noise, "
        f"not every step's gradient; that statistic's exact epsilon is "
        f"{r['statistic_epsilon']:.2f}, the most any audit of it could show with unlimited "
        "trials.",
        f"- Trial count: with {half} + {c['models'] - half} runs (half of each choosing the "
        f"threshold) Clopper-Pearson cannot exceed {result['ceiling']['clopper_pearson']:.2f} "
        "for any mechanism, and on the statistic's exact distribution it reaches "
        f"{r['ideal']['clopper_pearson']['median']:.2f} (the ideal reference's median); the "
        f"white-box bound's {r['white_box']['clopper_pearson']:.2f} is at that level.",
    ]


def table(result: dict[str, Any]) -> str:
    """An aligned text table, one row per accountant epsilon."""
    lines = [_cells(r) for r in result["rows"]]
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(_COLUMNS)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
    return "\n".join([fmt(_COLUMNS), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def markdown(result: dict[str, Any], command: str | None = None) -> str:
    """report.md: the table, the setting, how to read it."""
    c, d = result["config"], result["data"]
    rows = result["rows"]
    lines = ["# jaxmia DP-SGD audit", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
        *("| " + " | ".join(_cells(r)) + " |" for r in rows),
        "",
        f"Clopper-Pearson (CP) and one-run columns are epsilon lower bounds at delta "
        f"{c['delta']:g}, each at confidence {c['confidence']:g}; {c['models']} models per "
        f"epsilon ({c['models'] // 2} with each canary), {result['seconds']:.0f} s in all. "
        "The GDP columns are estimates, not bounds: they turn a lower bound on mu into "
        "epsilon through the Gaussian trade-off curve, which holds only if the training's "
        "privacy curve is Gaussian (for randomized response, exactly 1-DP, this many trials "
        "give about 4). The most Clopper-Pearson can show with this many trials "
        f"(perfectly separated scores) is {result['ceiling']['clopper_pearson']:.2f}; the "
        f"GDP estimate of perfectly separated scores, "
        f"{result['ceiling']['gdp_estimate']:.2f}, is an artefact of the Gaussian "
        "conversion, not evidence of that epsilon. PLD eps: the same noise, rate and steps "
        "by dp-accounting's PLD accountant; statistic eps: the exact epsilon of the "
        "white-box statistic.",
        "",
        "## Setting",
        "",
        f"- Data: {d['records']} records of {c['dataset']} (seed {c['seed']}), an MLP with "
        f"{c['hidden']} hidden units, plain SGD (learning rate {c['learning_rate']:g}), "
        f"DP-SGD with Poisson sampling at rate {rows[0]['sample_rate']:.3g} "
        f"(expected batch {c['batch_size']}), clipping norm {c['clip']:g}, "
        f"{c['epochs']} epochs = {rows[0]['steps']} steps.",
        "- Noise: calibrated per epsilon with dp-accounting's RDP accountant for Poisson "
        "sampling at that rate and step count: "
        + ", ".join(f"{_eps(r['accountant_epsilon'])}: {r['noise_multiplier']:.3g}" for r in rows)
        + ".",
        f"- White-box canary: a gradient of norm {c['clip']:g} on the first-layer weight of "
        f"input feature {d['feature']}, which is 0 in every record (no data gradient reaches "
        "it), added whenever the canary is sampled; statistic: that weight's change.",
        "- Black-box canary: one mislabelled record in half of the models; statistic: its "
        "loss on the final model.",
        f"- One-run audit: {d['canaries']} mislabelled records, each in one model's training "
        "set with probability 1/2 (noise calibrated to the same epsilon for its own rate).",
        f"- Ideal reference: the same estimators on {c['repetitions']} simulated audits of "
        "the white-box statistic's exact distribution (sum over steps of Bernoulli(q) "
        "shifts plus Gaussian noise) with the same trial counts: median and 10th "
        "percentile: what these estimators reach on that statistic with this many trials "
        "(another statistic or test could show more with as many).",
        "",
        "## Where the gap comes from",
        "",
        *_gap(result),
        "",
        "## How to read it",
        "",
        "A lower bound above the accountant's epsilon would show a defect in the training or "
        f"the accounting, or be chance: each of the {_bound_count(result)} lower bounds on "
        "the trained models in the table (white-box and black-box CP and one-run, per "
        f"epsilon) holds with probability {c['confidence']:g} on its own, not all of them "
        "together (a Bonferroni correction for all of them would compute each at "
        f"confidence {1 - (1 - c['confidence']) / _bound_count(result):.4g}). The ideal "
        "reference's columns are simulations, not statements about the trained models. "
        "Clopper-Pearson (Jagielski et al. 2020; Nasr et al. 2021) bounds "
        "`log((TPR_lo - delta) / FPR_hi)` at a threshold chosen on a random half of the "
        "runs and evaluated on the other half. The GDP estimate (Nasr et al. 2023) bounds "
        "mu by `Phi^-1(TPR_lo) - Phi^-1(FPR_hi)` and converts it with the exact mu-GDP "
        "curve, which assumes the privacy curve is Gaussian. The one-run bound (Steinke, "
        "Nasr and Jagielski 2023) guesses only the most confident canaries. A white-box "
        "bound near the ideal reference means the audit is as tight as its trial count "
        "allows for this statistic.",
        "",
        "## Versions",
        "",
        *(f"- {k}: {v}" for k, v in _versions(result).items()),
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Any) -> None:
    """Epsilon lower bounds and GDP estimates against accountant epsilon: the white-box
    bound and estimate, the ideal reference (median, 10th-90th percentile bar), black-box
    and one-run bounds, the diagonal, the PLD accountant's epsilon, the white-box
    statistic's exact epsilon and the Clopper-Pearson ceiling of the trial count. ``inf``
    sits at 1.5 times the largest finite one."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    rows = result["rows"]
    finite = [r["accountant_epsilon"] for r in rows if math.isfinite(r["accountant_epsilon"])]
    top = 1.5 * max(finite) if finite else 1.0
    xs = np.array(
        [r["accountant_epsilon"] if math.isfinite(r["accountant_epsilon"]) else top for r in rows]
    )
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    for name, label, style, colour in (
        ("clopper_pearson", "CP bound", "o-", "C0"),
        ("gdp_estimate", "GDP estimate (not a bound)", "s-", "C1"),
    ):
        ideal = [r["ideal"][name] for r in rows]
        med = np.array([i["median"] for i in ideal])
        lo = np.array([np.percentile(i["values"], 10) for i in ideal])
        hi = np.array([np.percentile(i["values"], 90) for i in ideal])
        ax.errorbar(
            xs,
            med,
            yerr=[med - lo, hi - med],
            fmt=style[0] + ":",
            alpha=0.5,
            capsize=3,
            color=colour,
            label=f"ideal mechanism, {label} (median, p10-p90)",
        )
        white = [r["white_box"][name] for r in rows]
        ax.plot(xs, white, style, color=colour, label=f"white-box Dirac, {label}")
    ax.plot(
        xs,
        [r["black_box"]["clopper_pearson"] for r in rows],
        "^-",
        color="C2",
        label="black-box, CP",
    )
    ax.plot(xs, [r["one_run"]["epsilon"] for r in rows], "v-", color="C3", label="one run")
    edge = max(finite) if finite else 0.0
    ax.plot([0, edge], [0, edge], "k--", lw=0.8, label="accountant epsilon (RDP)")
    for key, label, style in (
        ("pld_epsilon", "PLD accountant epsilon", "k+:"),
        ("statistic_epsilon", "exact epsilon of the white-box statistic", "kx-."),
    ):
        shown = [(x, r[key]) for x, r in zip(xs, rows, strict=True) if math.isfinite(r[key])]
        if shown:
            ax.plot(*zip(*shown, strict=True), style, lw=0.8, label=label)
    ax.axhline(
        result["ceiling"]["clopper_pearson"],
        color="0.5",
        lw=0.8,
        ls="-.",
        label="CP ceiling of the trial count",
    )
    ticks = [
        f"{x:.3g}" if math.isfinite(x) else "inf" for x in (r["accountant_epsilon"] for r in rows)
    ]
    ax.set_xticks(xs, ticks)
    ax.set_xlabel("accountant epsilon")
    ax.set_ylabel(f"epsilon: lower bound or estimate (delta {result['config']['delta']:g})")
    high = 1.15 * max(edge, result["ceiling"]["clopper_pearson"])
    for line in ax.get_lines():  # values above the frame (GDP without noise): written there
        for x, y in zip(*line.get_data(), strict=True):
            if y > high and x in xs:
                ax.annotate(f"{y:.3g}", (x, high), ha="center", va="top", fontsize=7)
    ax.set_ylim(0, high)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("DP-SGD audit: empirical epsilon against the accountant's")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plain(value: Any) -> Any:
    """JSON without non-standard tokens: ``inf`` becomes the string ``"inf"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _versions(result: dict[str, Any]) -> dict[str, str]:
    """The versions that computed ``result``: those it was loaded with (:func:`load`),
    else this process's."""
    return result.get("versions") or versions()


def to_json(result: dict[str, Any], command: str | None = None) -> str:
    """dp_audit.json: the result with its command and versions (``inf`` as ``"inf"``)."""
    return json.dumps(
        _plain({**result, "command": command, "versions": _versions(result)}), indent=2
    )


def _restored(value: Any) -> Any:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    return value


def load(path: str | os.PathLike) -> dict[str, Any]:
    """A dp_audit.json read back as the result of :func:`jaxmia.audit.run`
    (``"inf"`` as ``inf``), e.g. to redraw its plot; its ``versions`` stay with it, so a
    report written from it names the versions that computed its numbers."""
    with open(path) as f:
        return _restored(json.load(f))


def write(
    result: dict[str, Any], output_dir: str | os.PathLike, command: str | None = None
) -> dict[str, str]:
    """Writes dp_audit.json, report.md and (with matplotlib) dp_audit.png as one set;
    returns ``{name: path}``."""
    files = {
        "dp_audit.json": (to_json(result, command) + "\n").encode(),
        "report.md": markdown(result, command).encode(),
    }
    if outputs.plots_available():
        files["dp_audit.png"] = outputs.png(lambda f: plot(result, f))
    return outputs.write_set(output_dir, files)
