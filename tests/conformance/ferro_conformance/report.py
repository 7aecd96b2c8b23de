"""Compare the baseline and ferroloop columns of each suite; render text and JSON.

The denominator is the set of tests that pass on stdlib asyncio (the baseline); a test
counts for ferroloop if it passes in both columns.  Tests skipped or failing on the
baseline are listed but never counted.
"""

from __future__ import annotations

import dataclasses
import platform
from typing import Any

from ferro_conformance.orchestrate import Column, Outcome


@dataclasses.dataclass
class Comparison:
    """Baseline versus ferroloop for one suite."""

    suite: str
    baseline: Column
    ferroloop: Column

    @property
    def baseline_passing(self) -> list[str]:
        """Keys passing on the baseline, in run order."""
        return [key for key in self.baseline.order if self.baseline.outcomes[key].passing]

    def ferroloop_outcome(self, key: str) -> Outcome:
        """The ferroloop outcome for ``key`` (``not-run`` if it never ran)."""
        outcome = self.ferroloop.outcomes.get(key)
        if outcome is not None:
            return outcome
        if self.ferroloop.load_error:
            first = self.ferroloop.load_error.strip().splitlines()[-1]
            return Outcome("not-run", summary=f"suite could not be loaded: {first}")
        if not self.ferroloop.planned and self.ferroloop.problems:
            return Outcome("not-run", summary=f"suite never ran: {self.ferroloop.problems[0]}")
        return Outcome("not-run", summary="test does not exist in the ferroloop run")

    @property
    def both_passing(self) -> list[str]:
        """Baseline-passing keys that also pass on ferroloop."""
        return [key for key in self.baseline_passing if self.ferroloop_outcome(key).passing]

    @property
    def regressions(self) -> list[str]:
        """Baseline-passing keys that do not pass on ferroloop."""
        return [key for key in self.baseline_passing if not self.ferroloop_outcome(key).passing]

    @property
    def ferroloop_only(self) -> list[str]:
        """Keys passing on ferroloop but not on the baseline."""
        return [
            key
            for key in self.ferroloop.order
            if self.ferroloop.outcomes[key].passing
            and not self.baseline.outcomes.get(key, Outcome("not-run")).passing
        ]

    @property
    def baseline_not_passing(self) -> list[str]:
        """Keys the baseline skipped or did not pass (excluded from the counts)."""
        return [key for key in self.baseline.order if not self.baseline.outcomes[key].passing]

    @property
    def flaky(self) -> list[str]:
        """Keys that passed only when re-run, in either column."""
        return sorted(
            {
                key
                for column in (self.baseline, self.ferroloop)
                for key, outcome in column.outcomes.items()
                if outcome.flaky
            }
        )

    def to_json(self) -> dict[str, Any]:
        """Everything about this suite, JSON-friendly."""
        passing = len(self.baseline_passing)
        return {
            "ferroloop_passing": len(self.both_passing),
            "baseline_passing": passing,
            "ratio": ratio(len(self.both_passing), passing),
            "regressions": {key: self.ferroloop_outcome(key).to_json() for key in self.regressions},
            "ferroloop_only": self.ferroloop_only,
            "baseline_not_passing": {
                key: self.baseline.outcomes[key].to_json() for key in self.baseline_not_passing
            },
            "flaky": self.flaky,
            "columns": {
                name: _column_json(column)
                for name, column in (("baseline", self.baseline), ("ferroloop", self.ferroloop))
            },
        }


def _column_json(column: Column) -> dict[str, Any]:
    return {
        "backend": column.backend,
        "seconds": column.seconds,
        "workers": column.workers,
        "problems": column.problems,
        "load_error": column.load_error,
        "outcomes": {
            key: column.outcomes[key].to_json() for key in column.order if key in column.outcomes
        },
    }


def ratio(numerator: int, denominator: int) -> float:
    """``numerator / denominator``, 0.0 for an empty denominator."""
    return numerator / denominator if denominator else 0.0


def totals(comparisons: list[Comparison]) -> tuple[int, int]:
    """(ferroloop-passing, baseline-passing) over all suites."""
    return (
        sum(len(item.both_passing) for item in comparisons),
        sum(len(item.baseline_passing) for item in comparisons),
    )


def _notes(item: Comparison) -> str:
    counts: dict[str, int] = {}
    for key in item.regressions:
        kind = item.ferroloop_outcome(key).outcome
        if kind in ("timeout", "crash", "abort", "not-run"):
            counts[kind] = counts.get(kind, 0) + 1
    notes = [f"{count} {kind}" for kind, count in sorted(counts.items())]
    if item.ferroloop.load_error:
        notes.insert(0, "LOAD ERROR")
    if item.baseline.load_error:
        notes.insert(0, "BASELINE LOAD ERROR")
    elif not item.baseline.planned:
        notes.insert(0, "BASELINE NOT RUN")
    if item.flaky:
        notes.append(f"{len(item.flaky)} flaky")
    return f"  [{', '.join(notes)}]" if notes else ""


def render(comparisons: list[Comparison], *, verbose: bool, subject: str) -> list[str]:
    """The human-readable report, one string per line."""
    title = (
        f"conformance of {subject} with CPython {platform.python_version()}'s "
        "test.test_asyncio (baseline: stdlib asyncio)"
    )
    lines = [title]
    width = max([len(item.suite) for item in comparisons] + [5])
    for item in comparisons:
        ok, base = len(item.both_passing), len(item.baseline_passing)
        lines.append(
            f"  {item.suite:<{width}}  ferroloop {ok:>4} / baseline {base:>4} "
            f"({100 * ratio(ok, base):5.1f}%){_notes(item)}"
        )
    ok, base = totals(comparisons)
    lines.append(
        f"  {'total':<{width}}  ferroloop {ok:>4} / baseline {base:>4} "
        f"({100 * ratio(ok, base):5.1f}%)"
    )
    if verbose:
        lines.extend(_details(comparisons))
    return lines


def _details(comparisons: list[Comparison]) -> list[str]:
    lines: list[str] = []
    for item in comparisons:
        section: list[str] = []
        if item.ferroloop.load_error:
            section.append("    ferroloop run could not load the suite:")
            section.extend(
                f"      {line}" for line in item.ferroloop.load_error.strip().splitlines()[-6:]
            )
        regressions = item.regressions
        if regressions and not item.ferroloop.load_error:
            section.append(f"    not passing on ferroloop ({len(regressions)}):")
            for key in regressions:
                outcome = item.ferroloop_outcome(key)
                section.append(f"      {outcome.outcome:<8} {key}: {outcome.summary}")
        for label, keys, column in (
            ("passing only on ferroloop", item.ferroloop_only, item.ferroloop),
            ("not passing on the baseline (not counted)", item.baseline_not_passing, item.baseline),
        ):
            if keys:
                section.append(f"    {label} ({len(keys)}):")
                for key in keys:
                    outcome = column.outcomes[key]
                    section.append(f"      {outcome.outcome:<8} {key}: {outcome.summary}")
        if item.flaky:
            section.append(f"    passing only on a re-run ({len(item.flaky)}):")
            for key in item.flaky:
                for name, column in (("baseline", item.baseline), ("ferroloop", item.ferroloop)):
                    outcome = column.outcomes.get(key)
                    if outcome is not None and outcome.flaky:
                        section.append(f"      {name:<9} {key}: {outcome.first_summary}")
        for name, column in (("baseline", item.baseline), ("ferroloop", item.ferroloop)):
            for problem in column.problems:
                section.append(f"    {name} run: {problem}")
        if section:
            lines.append(f"{item.suite}:")
            lines.extend(section)
    return lines
