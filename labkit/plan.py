"""Plan and apply: every step diffs every node; apply runs the changes, re-diffs, and proves it.

``diff`` never writes. ``apply`` goes stage by stage (nodes of a stage in
parallel, steps of a node in order): it diffs a step, runs its changes, records
evidence of each (node, step, before -> after, command, exit code), then diffs
everything again and raises StepError if anything is left to change. A ``Plan``
knows its phase (``"1"``, later ``"1.5"``...), so whoever shows it can apply
exactly that plan. Showing it is ``report.plan_html``'s job; the notebook's
confirm button is ``notebook.confirm``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from labkit.errors import (
    CommandError,
    ConfigError,
    ConnectError,
    LabkitError,
    NotAllowed,
    StepError,
)
from labkit.facts import RemoteHost
from labkit.hosts import attempt_each, open_hosts
from labkit.params import Lab
from labkit.results import record
from labkit.secrets import redact
from labkit.steps import Stage, Step, Target, stages_for
from labkit.steps.base import Diff, DiffKind, Evidence

__all__ = [
    "Entry",
    "Phase",
    "Plan",
    "apply",
    "apply_plan",
    "diff",
    "is_cluster_phase",
    "known_phases",
    "phase_of",
]

Progress = Callable[[str], None]
Phase = str | int | None  # "1", "1.5"...; an int is read as its string; None: every phase
# The phases planned through the Kubernetes API (labkit.cluster.plan builds their steps).
# Named here so an SSH plan never loads the kubernetes client (seconds) to tell them apart.
CLUSTER_PHASES = ("1.5", "2", "3")


def known_phases() -> list[str]:
    """The phases and steps labkit can plan: SSH ones ("1", "1.2"...), then cluster ones."""
    from labkit.steps import PHASES_WITH_STEPS, STEPS_WITH_STAGES  # noqa: PLC0415

    found = [*PHASES_WITH_STEPS, *STEPS_WITH_STAGES, *CLUSTER_PHASES]
    return sorted(dict.fromkeys(found), key=lambda key: [int(part) for part in key.split(".")])


def phase_of(phase: Phase) -> str | None:
    """``phase`` as the plan's key: ``"1"``, ``"1.5"``, or None for every phase with steps.

    A phase or step labkit has nothing to plan for (``9``, ``1.9``) is a ConfigError
    naming the ones it has: an empty plan would read as "nothing to change".
    """
    if phase is None:
        return None
    key = str(phase).strip()
    valid = known_phases()
    if not re.fullmatch(r"\d+(\.\d+)?", key):
        raise ConfigError(
            f"phase {phase!r}: expected a roadmap phase or step such as 1 or 1.5 "
            f"(labkit plans {', '.join(valid)})"
        )
    if key not in valid:
        raise ConfigError(
            f"phase {key}: labkit has no plan for it; it plans phases and steps "
            f"{', '.join(valid)} (later phases are checked with `labkit check --phase N`)"
        )
    return key


@dataclass(frozen=True)
class Entry:
    """One step's verdict on one node."""

    stage: str
    node: str
    step: str
    diff: Diff

    def change_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready row per change (redacted)."""
        rows = [
            {
                "step": self.step,
                "change": change.summary,
                "before": change.before,
                "after": change.after,
                "argv": change.command(),
            }
            for change in self.diff.changes
        ]
        return list(redact(rows))


@dataclass
class Plan:
    """What each step of ``phase`` would change on each node; after ``apply``, what was done."""

    lab: str
    entries: list[Entry]
    phase: str | None = None  # "1", "1.5"...; None: every phase with steps
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def nodes(self) -> list[str]:
        """Node names in the order they appear."""
        return list(dict.fromkeys(entry.node for entry in self.entries))

    def changes(self) -> dict[str, list[dict[str, Any]]]:
        """Per node, the changes it would get (an empty list when there is nothing to do)."""
        out: dict[str, list[dict[str, Any]]] = {node: [] for node in self.nodes}
        for entry in self.entries:
            out[entry.node].extend(entry.change_rows())
        return out

    @property
    def pending(self) -> int:
        """How many changes are left."""
        return sum(len(entry.diff.changes) for entry in self.entries)

    def cannot(self) -> dict[str, list[dict[str, str]]]:
        """Per node, the steps that cannot reach their state here, with why."""
        out: dict[str, list[dict[str, str]]] = {}
        for entry in self.entries:
            if entry.diff.kind is DiffKind.CANNOT:
                out.setdefault(entry.node, []).append(
                    {"step": entry.step, "reason": redact(entry.diff.reason)}
                )
            for part in entry.diff.cannot_parts:  # a changing step's parts that cannot
                out.setdefault(entry.node, []).append({"step": entry.step, "reason": redact(part)})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per node its list of changes, then what cannot be done and the evidence."""
        return {
            "lab": self.lab,
            "phase": self.phase,
            "nodes": self.changes(),
            "pending": self.pending,
            "cannot": self.cannot(),
            "evidence": [item.to_dict() for item in self.evidence],
        }

    def rows(self) -> list[dict[str, str]]:
        """One table row per (node, step): status and what would change or why not."""
        rows = []
        for entry in self.entries:
            detail = entry.diff.reason
            if entry.diff.changes:
                detail = "; ".join(
                    f"{c.summary} ({c.before} -> {c.after})" for c in entry.diff.changes
                )
                if entry.diff.cannot_parts:
                    detail += "; cannot here: " + "; ".join(entry.diff.cannot_parts)
            rows.append(
                {
                    "node": entry.node,
                    "step": entry.step,
                    "status": str(entry.diff.kind),
                    "detail": redact(detail),
                    "commands": redact(
                        "\n".join(change.command() for change in entry.diff.changes)
                    ),
                }
            )
        return rows

    def text(self) -> str:
        """A terminal rendering: changes and cannots per node, then a count."""
        lines = []
        for row in self.rows():
            if row["status"] == "none":
                continue
            mark = "~" if row["status"] == "change" else "!"
            lines.append(f"{mark} {row['node']:<14} {row['step']:<15} {row['detail']}")
            lines += [f"    $ {command}" for command in row["commands"].splitlines()]
        cannot = sum(len(v) for v in self.cannot().values())
        lines.append(
            f"{self.lab}: {self.pending} change(s) on {len(self.nodes)} node(s); "
            f"{cannot} step(s) cannot run here (!)"
        )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from labkit.report import plan_html  # noqa: PLC0415 - report is heavy

        return plan_html(
            self.lab,
            self.phase,
            self.pending,
            self.rows(),
            [item.to_dict() for item in self.evidence],
        )

    def __repr__(self) -> str:
        phase = f"phase {self.phase}" if self.phase else "every phase"
        return f"Plan({self.lab}, {phase}: {self.pending} change(s) on {len(self.nodes)} node(s))"


def is_cluster_phase(phase: Phase) -> bool:
    """Whether ``phase`` (``"1.5"``) is applied through the Kubernetes API, not over SSH."""
    return phase is not None and str(phase) in CLUSTER_PHASES


def _targets(lab: Lab, hosts: Mapping[str, RemoteHost]) -> dict[str, Target]:
    shared: dict[str, Any] = {}
    return {
        node.name: Target(node, hosts[node.name], lab, shared, dict(hosts)) for node in lab.nodes
    }


def _each_node(nodes: tuple[str, ...], work: Callable[[str], None]) -> None:
    """Run ``work`` for every node in parallel; one error names every node that failed."""
    failures = {
        name: outcome
        for name, outcome in attempt_each(nodes, work).items()
        if isinstance(outcome, LabkitError)
    }
    if not failures:
        return
    detail = "; ".join(f"{name}: {error}" for name, error in failures.items())
    kind = (
        ConnectError if all(isinstance(e, ConnectError) for e in failures.values()) else StepError
    )
    raise kind(redact(f"{len(failures)} node(s) failed ({', '.join(failures)}): {detail}"))


def _diff_stage(stage: Stage, targets: dict[str, Target]) -> list[Entry]:
    found: dict[str, list[Entry]] = {}

    def one(name: str) -> None:
        target = targets[name]
        found[name] = [
            Entry(stage.title, name, step.name, step.diff(target))
            for step in stage.steps
            if step.applies_to(target.node, target.lab)
        ]

    _each_node(stage.nodes, one)
    return [entry for name in stage.nodes for entry in found[name]]


def diff(lab: Lab, hosts: Mapping[str, RemoteHost] | None = None, phase: Phase = None) -> Plan:
    """What ``phase`` would change on every node; reads only."""
    key = phase_of(phase)
    if is_cluster_phase(key):  # objects in the cluster, read through the Kubernetes API
        from labkit.cluster.plan import diff_entries  # noqa: PLC0415 - the kubernetes client

        entries = [Entry(*row) for row in diff_entries(lab, str(key))]
    elif hosts is None:
        with open_hosts(lab) as opened:
            return diff(lab, opened, key)
    else:
        targets = _targets(lab, hosts)
        entries = [e for stage in stages_for(lab, key) for e in _diff_stage(stage, targets)]
    plan = Plan(lab.name, entries, key)
    record(
        "plans",
        [{"node": n, "applied": False, **c} for n, cs in plan.changes().items() for c in cs],
    )
    return plan


def _apply_step(step: Step, target: Target, evidence: list[Evidence], progress: Progress) -> None:
    verdict = step.diff(target)
    for change in verdict.changes:
        progress(redact(f"{target.node.name}: {step.name}: {change.summary}"))
        record = partial(  # the change's evidence, given how applying it went
            Evidence,
            target.node.name,
            step.name,
            change.summary,
            change.before,
            change.after,
            change.command(),
        )
        try:
            code, took = change.apply(target.host)
        except CommandError as exc:
            evidence.append(record(False, exc.remote_status, 0.0, str(exc)))
            raise StepError(f"step {step.name}: {exc}") from exc
        evidence.append(record(True, code, round(took, 3)))


def _require_isolated(lab: Lab) -> None:
    """On the sandbox, refuse to apply unless every node runs in its own namespaces."""
    if lab.kind != "sandbox" or lab.sandbox is None:
        return
    from labkit.sandbox.nodes import nodes_status  # noqa: PLC0415 - sandbox only

    status = nodes_status(lab, lab.path(lab.sandbox.state_dir))
    loose = [row["name"] for row in status if not row.get("isolated")]
    if loose:
        raise NotAllowed(
            f"sandbox nodes {loose} are not isolated (own namespaces and filesystem); "
            "apply would change this machine; run `labkit sandbox up` first"
        )


def apply(
    lab: Lab,
    hosts: Mapping[str, RemoteHost] | None = None,
    phase: Phase = None,
    progress: Progress = print,
) -> Plan:
    """Run every needed change, then re-diff; StepError if anything is left. Returns the re-diff."""
    key = phase_of(phase)
    cluster = is_cluster_phase(key)
    if hosts is None and not cluster:
        _require_isolated(lab)
        with open_hosts(lab) as opened:
            return apply(lab, opened, key, progress)
    targets = _targets(lab, hosts) if hosts is not None else {}
    evidence: list[Evidence] = []
    try:
        if cluster:
            from labkit.cluster.plan import apply_objects  # noqa: PLC0415 - kubernetes client

            apply_objects(lab, str(key), evidence, progress=progress)
        for stage in [] if cluster else stages_for(lab, key):
            progress(f"== {stage.title}")

            def one(name: str, stage: Stage = stage) -> None:
                trail: list[Evidence] = []
                try:
                    for step in stage.steps:
                        _apply_step(step, targets[name], trail, progress)
                finally:
                    evidence.extend(trail)

            _each_node(stage.nodes, one)
    finally:
        record("plans", [item.to_dict() for item in evidence])
    after = diff(lab, hosts, key)
    after.evidence = evidence
    if after.pending:
        left = "; ".join(
            f"{n}: {', '.join(c['change'] for c in cs)}" for n, cs in after.changes().items() if cs
        )
        raise StepError(
            redact(
                f"lab {lab.name}: {after.pending} change(s) left after apply ({left}); "
                "a step does not converge: rerun `labkit plan` and read its detail"
            )
        )
    return after


def apply_plan(
    lab: Lab,
    planned: Plan,
    hosts: Mapping[str, RemoteHost] | None = None,
    progress: Progress = print,
) -> Plan:
    """Apply the plan that was shown: its phase on its lab (what a confirm button does)."""
    if planned.lab != lab.name:
        raise ConfigError(
            f"the plan shown is for lab {planned.lab}, not {lab.name}; run the plan cell again"
        )
    return apply(lab, hosts, planned.phase, progress)
