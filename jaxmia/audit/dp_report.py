"""Writing a ``jaxmia dp-audit`` (:func:`jaxmia.audit.dp_audit.run`) to disk:
dp_audit.json, report.md and dp_audit.png (epsilon lower bounds, real and ideal, against
the accountant's epsilon), as one set (:func:`jaxmia.audit.outputs.write_set`)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from jaxmia.audit import outputs
from jaxmia.audit.report import versions

__all__ = ["OUTPUTS", "load", "markdown", "plot", "table", "to_json", "write"]

OUTPUTS = ("dp_audit.json", "report.md", "dp_audit.png")
"""The files a dp-audit writes into its output directory."""

_COLUMNS = (
    "accountant eps",
    "white-box CP",
    "white-box GDP",
    "ideal CP median (p10)",
    "ideal GDP median (p10)",
    "black-box CP",
    "one-run",
    "models",
    "seconds",
)


def _eps(value: float) -> str:
    return "inf (no noise)" if math.isinf(value) else f"{value:.2f}"


def _cells(row: dict[str, Any]) -> list[str]:
    ideal = row["ideal"]
    return [
        _eps(row["accountant_epsilon"]),
        f"{row['white_box']['clopper_pearson']:.2f}",
        f"{row['white_box']['gdp']:.2f}",
        f"{ideal['clopper_pearson']['median']:.2f} ({ideal['clopper_pearson']['p10']:.2f})",
        f"{ideal['gdp']['median']:.2f} ({ideal['gdp']['p10']:.2f})",
        f"{row['black_box']['clopper_pearson']:.2f}",
        f"{row['one_run']['epsilon']:.2f}",
        str(row["models"]),
        f"{row['seconds']:.0f}",
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
        f"Epsilon lower bounds at delta {c['delta']:g} and confidence {c['confidence']:g}; "
        f"{c['models']} models per epsilon ({c['models'] // 2} with each canary), "
        f"{result['seconds']:.0f} s in all. The ceiling that this many trials allows "
        f"(perfectly separated scores) is {result['ceiling']['clopper_pearson']:.2f} for "
        f"Clopper-Pearson and {result['ceiling']['gdp']:.2f} for GDP.",
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
        "the Dirac canary's exact output distribution (sum over steps of Bernoulli(q) "
        "shifts plus Gaussian noise) with the same trial counts: median and 10th "
        "percentile.",
        "",
        "## How to read it",
        "",
        "Every bound holds with the stated confidence and must not exceed the accountant's "
        "epsilon. Clopper-Pearson (Jagielski et al. 2020; Nasr et al. 2021) bounds "
        "`log((TPR_lo - delta) / FPR_hi)` at a threshold chosen on a random half of the "
        "runs and evaluated on the other half. GDP (Nasr et al. 2023) bounds mu by "
        "`Phi^-1(TPR_lo) - Phi^-1(FPR_hi)` and converts it with the exact mu-GDP curve; it "
        "assumes the privacy curve is Gaussian. The one-run bound (Steinke, Nasr and "
        "Jagielski 2023) guesses only the most confident canaries. A white-box bound near "
        "the ideal reference means the audit is as tight as its trial count allows.",
        "",
        "## Versions",
        "",
        *(f"- {k}: {v}" for k, v in versions().items()),
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Any) -> None:
    """Epsilon lower bound against accountant epsilon: the white-box bounds, the ideal
    reference (median, 10th-90th percentile bar), black-box and one-run bounds, the
    diagonal and the trial-count ceiling. ``inf`` sits at 1.5 times the largest finite one."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    rows = result["rows"]
    finite = [r["accountant_epsilon"] for r in rows if math.isfinite(r["accountant_epsilon"])]
    top = 1.5 * max(finite) if finite else 1.0
    xs = np.array(
        [r["accountant_epsilon"] if math.isfinite(r["accountant_epsilon"]) else top for r in rows]
    )
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for name, label, style, colour in (
        ("clopper_pearson", "CP", "o-", "C0"),
        ("gdp", "GDP", "s-", "C1"),
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
    ax.plot([0, edge], [0, edge], "k--", lw=0.8, label="accountant epsilon")
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
    ax.set_ylabel(f"epsilon lower bound (delta {result['config']['delta']:g})")
    high = 1.15 * max(edge, result["ceiling"]["clopper_pearson"])
    for line in ax.get_lines():  # values above the frame (GDP without noise): written there
        for x, y in zip(*line.get_data(), strict=True):
            if y > high and x in xs:
                ax.annotate(f"{y:.3g}", (x, high), ha="center", va="top", fontsize=7)
    ax.set_ylim(0, high)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
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


def to_json(result: dict[str, Any], command: str | None = None) -> str:
    """dp_audit.json: the result with its command and versions (``inf`` as ``"inf"``)."""
    return json.dumps(_plain({**result, "command": command, "versions": versions()}), indent=2)


def _restored(value: Any) -> Any:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    return value


def load(path: str | os.PathLike) -> dict[str, Any]:
    """A dp_audit.json read back as the result of :func:`jaxmia.audit.dp_audit.run`
    (``"inf"`` as ``inf``), e.g. to redraw its plot."""
    with open(path) as f:
        result = _restored(json.load(f))
    result.pop("versions", None)
    return result


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
