"""Compare two sets of scenario replays (``evaluate-scenarios --out`` JSON): which expectations held more or less
often, and on which seeds they flipped.

Why: a detector candidate or a diff setting is judged on the replays, not on scene-set figures (MODEL_CARD.md), and
a total like "12 of 16" hides which seeds changed. Only replays present in both sets (same scenario and seed) count.
Each change gets the exact two-sided sign test (McNemar's) on its flipped seeds: the verdicts sit so close to their
thresholds that a neutral change of a hundredth in one score flips a replay or two either way (MODEL_CARD, stage 18),
so "13 -> 14 of 17" alone says nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class ExpectationChange:
    scenario: str
    expectation: str
    runs: int  # replays present in both sets
    held_before: int
    held_after: int
    lost: tuple[int | None, ...]  # seeds (None: the scenario's own) where it held before and not after
    gained: tuple[int | None, ...]  # seeds where it held after and not before

    @property
    def p_value(self) -> float:
        """Chance of flips at least this lopsided if each flipped seed were a coin toss (exact two-sided sign test
        on the discordant replays, McNemar's test); 1.0 when nothing flipped."""
        return sign_test(len(self.gained), len(self.lost))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: P(a split at least this uneven) over wins + losses fair coin tosses."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def load_replays(path: str | Path) -> list[dict]:
    """The ``replays`` of an ``evaluate-scenarios --out`` file, with a clear error for anything else."""
    problem = None
    try:
        replays = json.loads(Path(path).read_text(encoding="utf-8"))["replays"]
        if not all(isinstance(r, dict) and "scenario" in r and "expectations" in r for r in replays):
            problem = "a replay lacks scenario or expectations"
    except KeyError:
        problem = "no replays list"
    except (OSError, ValueError, TypeError) as exc:
        problem = str(exc)
    if problem:
        raise ConfigError(f"--compare {path}: not a replay file written by `evaluate-scenarios --out` ({problem})")
    return replays


def compare_replays(before: list[dict], after: list[dict]) -> list[ExpectationChange]:
    """One row per (scenario, expectation) over the replays both sets contain, in ``after``'s order."""
    old = {(r["scenario"], r.get("seed")): r for r in before}
    rows: dict[tuple[str, str], dict] = {}
    for r in after:
        prev = old.get((r["scenario"], r.get("seed")))
        if prev is None:
            continue
        for exp_id, now in r["expectations"].items():
            was = prev["expectations"].get(exp_id)
            if was is None:
                continue
            row = rows.setdefault((r["scenario"], exp_id), {"runs": 0, "before": 0, "after": 0, "lost": [],
                                                             "gained": []})
            row["runs"] += 1
            row["before"] += int(was["ok"])
            row["after"] += int(now["ok"])
            if was["ok"] and not now["ok"]:
                row["lost"].append(r.get("seed"))
            elif now["ok"] and not was["ok"]:
                row["gained"].append(r.get("seed"))
    return [ExpectationChange(scenario, exp_id, row["runs"], row["before"], row["after"], tuple(row["lost"]),
                              tuple(row["gained"])) for (scenario, exp_id), row in rows.items()]


def _seeds(seeds: tuple[int | None, ...]) -> str:
    return ", ".join("own" if s is None else str(s) for s in seeds)


def print_comparison(changes: list[ExpectationChange], console, label: str) -> None:
    """A table: held before -> after per expectation, and the seeds that flipped."""
    if not changes:
        console.print(f"\nno replay in common with {label} (same scenarios and seeds needed)")
        return
    console.print(f"\n[bold]against {label}[/] (replays in common; held before -> now)", highlight=False)
    for c in changes:
        flips = []
        if c.lost:
            flips.append(f"lost on {_seeds(c.lost)}")
        if c.gained:
            flips.append(f"gained on {_seeds(c.gained)}")
        if flips:
            flips.append(f"p = {c.p_value:.2f}")
        console.print(f"    {c.held_before:>3} -> {c.held_after:<3} of {c.runs}  {c.scenario} / {c.expectation}"
                      + (f"  ({'; '.join(flips)})" if flips else ""), highlight=False)
    changed = sum(bool(c.lost or c.gained) for c in changes)
    console.print(f"    {changed} of {len(changes)} expectations changed on some seed", highlight=False)
    if changed:
        clear = [c for c in changes if c.p_value < 0.05]
        console.print("    beyond chance (sign test, p < 0.05): "
                      + (", ".join(f"{c.scenario} / {c.expectation} "
                                   f"({'better' if len(c.gained) > len(c.lost) else 'worse'})" for c in clear)
                         if clear else "none (it takes 6 seeds flipped one way and none back, or 8 against 1)"),
                      highlight=False)
