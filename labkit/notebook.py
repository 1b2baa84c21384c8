"""What a lab-book notebook calls: open the lab, run a phase's checks, show and record results.

Notebooks stay thin: one call per cell. Headless runs (``labkit run``) set
``LABKIT_RUN_DIR``; then every result shown here is also recorded for
results.json and the report.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labkit.checks import Results, run_checks
from labkit.environment import HEADLESS, PARAMS_OVERRIDE, headless, params_override
from labkit.errors import LabkitError
from labkit.facts import RemoteHost
from labkit.params import Lab, load_lab
from labkit.plan import Plan, apply_plan
from labkit.report import changes_phrase, check_table_html, show
from labkit.results import record
from labkit.roadmap import ITEMS
from labkit.secrets import redact

__all__ = [
    "HEADLESS",
    "PARAMS_OVERRIDE",
    "Confirmation",
    "Skipped",
    "applications",
    "argocd_access",
    "check",
    "compatibility",
    "confirm",
    "coverage",
    "dependent_checks",
    "describe",
    "headless",
    "interactive",
    "open_lab",
    "show",
]


def interactive() -> bool:
    """True in a kernel with a frontend that can show widgets (JupyterLab), not headless."""
    if headless():
        return False
    try:
        import ipywidgets  # noqa: F401, PLC0415 - decoration for interactive users only
        from IPython import get_ipython  # noqa: PLC0415
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def open_lab(params_file: str | Path | list[str]) -> Lab:
    """Load and validate the lab (one file, or layers in order); set plotly up for offline HTML."""
    import plotly.io as pio  # noqa: PLC0415 - only notebooks need plotly configured

    # plotly >= 6 emits only a JSON mimetype by default, which nbconvert drops.
    pio.renderers.default = "plotly_mimetype+notebook"
    files = params_file if isinstance(params_file, list) else [params_file]
    # The test suite points the committed notebooks (run by nbval, which cannot inject
    # parameters) at a private sandbox; `labkit run` clears this for its kernels.
    override = params_override()
    return load_lab(*([override] if override else files))


def check(
    lab: Lab, phase: int | None = None, ids: list[str] | None = None, apply: bool = False
) -> Results:
    """Run checks, record them for the run, return them (a cell ending with it shows a table)."""
    results = run_checks(lab, phase=phase, ids=ids, apply=apply)
    record("checks", results.to_list())
    return results


def describe(lab: Lab) -> Any:
    """The lab at a glance: nodes, where each component runs, version pins (a DataFrame)."""
    import pandas as pd  # noqa: PLC0415

    rows = [
        {
            "what": f"node {n.name}",
            "where": f"{n.ssh_user}@{n.address}:{n.ssh_port}",
            "detail": n.role,
        }
        for n in lab.nodes
    ]
    rows += [
        {
            "what": "postgresql",
            "where": f"{lab.postgres.host}:{lab.postgres.port}",
            "detail": f"{lab.versions.postgresql}, db {lab.postgres.database}",
        },
        {
            "what": "redis",
            "where": f"{lab.redis.host}:{lab.redis.port}",
            "detail": f"{lab.redis.replicas} replicas, {lab.redis.sentinels} sentinels",
        },
        {
            "what": "shlink",
            "where": lab.shlink.base_url,
            "detail": f"redirect cache {'on' if lab.shlink.redirect_cache else 'off'}",
        },
    ]
    rows += [
        {"what": f"pin {name}", "where": "", "detail": str(value)}
        for name, value in lab.versions.model_dump().items()
    ]
    return pd.DataFrame(rows)


def coverage() -> Any:
    """Every roadmap checklist item: its id, words, what it needs, and whether labkit checks it."""
    import pandas as pd  # noqa: PLC0415

    from labkit.checks import ITEMS, implemented_ids  # noqa: PLC0415

    done = implemented_ids()
    return pd.DataFrame(
        [
            {
                "id": entry.id,
                "item": entry.title,
                "needs": entry.needs,
                "checked by labkit": "yes" if entry.id in done else "not implemented",
            }
            for entry in ITEMS
        ]
    )


def compatibility(lab: Lab) -> Any:
    """The version-compatibility rules that apply to this lab's pins, with their sources."""
    import pandas as pd  # noqa: PLC0415

    from labkit.compat import evaluate  # noqa: PLC0415

    return pd.DataFrame(
        [
            {
                "pin": verdict.subject,
                "supported": verdict.expected,
                "verdict": "ok" if verdict.ok else "NOT SUPPORTED",
                "source": verdict.rule.source,
            }
            for verdict in evaluate(lab.versions)
        ]
    )


class Skipped:
    """What a notebook cell shows when its step cannot run on this lab, and why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"skip: {self.reason}"

    def _repr_html_(self) -> str:
        import html  # noqa: PLC0415

        return f"<p><b>skip</b>: {html.escape(self.reason)}</p>"


def argocd_access(lab: Lab) -> Any:
    """The ArgoCD UI's address and login (the password masked), or a Skipped saying why not."""
    import pandas as pd  # noqa: PLC0415

    from labkit import gitops  # noqa: PLC0415 - the kubernetes client only for cluster labs

    shown = _with_argocd(lab, gitops.access)
    if isinstance(shown, Skipped):
        return shown
    return pd.DataFrame([{"what": key, "value": value} for key, value in shown.items()])


def applications(lab: Lab, wait: bool = False) -> Any:
    """ArgoCD's Applications as a table (sync, health, revision, message, failing resources).

    With ``wait``, first wait (progress printed, deadline ``cluster.wait_timeout_s``) until
    every Application is Synced and Healthy. On the sandbox, before phase 1 saved a
    kubeconfig, or before ArgoCD is installed: a Skipped saying why.
    """
    from labkit import gitops  # noqa: PLC0415 - the kubernetes client only for cluster labs

    def read(cluster: Any, lab: Lab) -> Any:
        if wait:
            return gitops.wait_synced(cluster, lab, progress=print)
        return gitops.applications(cluster, lab)

    return _with_argocd(lab, read)


def _with_argocd(lab: Lab, read: Callable[[Any, Lab], Any]) -> Any:
    """``read(cluster, lab)``, or a Skipped saying why there is no cluster or no ArgoCD yet."""
    from labkit.cluster import Cluster  # noqa: PLC0415 - the kubernetes client on demand
    from labkit.cluster.plan import unreachable_reason  # noqa: PLC0415
    from labkit.errors import NotFound  # noqa: PLC0415

    reason = unreachable_reason(lab)
    if reason:
        return Skipped(reason)
    with Cluster.open(lab) as cluster:
        try:
            return read(cluster, lab)
        except NotFound as exc:
            return Skipped(f"ArgoCD is not installed yet ({exc}); apply phase 1.5 first")


def dependent_checks(phase: str | None) -> list[str]:
    """Ids of the checks that prove what a plan of ``phase`` changes (``1`` -> every 1.x.y)."""
    return [entry.id for entry in ITEMS if phase is None or entry.id.startswith(f"{phase}.")]


def _display(html: str, text: str) -> dict[str, Any]:
    """One display_data output (an ipywidgets Output's entry) with HTML and a text fallback."""
    data = {"text/html": redact(html), "text/plain": redact(text)}
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": redact(text)}


class Confirmation:
    """A plan shown once, with a confirm button when interactive; the click applies that plan.

    ``confirm`` makes one. Interactively with ``apply_now``, nothing changes until the
    button is clicked; the click applies exactly the shown plan (its lab and phase) and
    replaces the output in place: progress per node, then the evidence and re-plan, then
    the checks that depend on it. Headless with ``apply_now`` it applies at once.
    """

    def __init__(
        self,
        lab: Lab,
        planned: Plan,
        apply_now: bool,
        *,
        interactive: bool,
        hosts: Mapping[str, RemoteHost] | None = None,
        recheck: Callable[[], Results] | None = None,
        progress: Callable[[str], None] = print,
    ) -> None:
        self.lab = lab
        self.plan = planned
        self.result: Plan | None = None  # the re-plan after applying, with its evidence
        self.checks: Results | None = None  # the dependent checks, run again after applying
        self.error: LabkitError | None = None
        self.button: Any = None  # ipywidgets.Button when waiting for a click
        self.output: Any = None  # the ipywidgets.Output replaced in place
        self.widget: Any = None  # output above, button below: what the cell shows
        self._hosts = hosts
        self._recheck = recheck or (lambda: run_checks(lab, ids=dependent_checks(planned.phase)))
        self._lock = threading.Lock()
        if apply_now and planned.pending and interactive:
            self._offer()
        elif apply_now and planned.pending:
            self._apply(progress)

    @property
    def label(self) -> str:
        """The button's words: what a click does."""
        return f"Apply {changes_phrase(self.plan.pending)} to {self.lab.name}"

    def _offer(self) -> None:
        import ipywidgets  # noqa: PLC0415 - interactive users only

        self.button = ipywidgets.Button(
            description=self.label,
            button_style="warning",
            icon="play",
            tooltip=f"{self.label} (phase {self.plan.phase or 'all'}), then check again",
            layout=ipywidgets.Layout(width="auto", min_width="18em"),
        )
        self.output = ipywidgets.Output()
        self.output.outputs = (
            _display(self.plan._repr_html_(), self.plan.text()),
            _stream(f"{self.label}? Nothing changes until you click the button.\n"),
        )
        self.button.on_click(self._clicked)
        self.widget = ipywidgets.VBox([self.output, self.button])

    def _append(self, line: str) -> None:
        with self._lock:  # nodes report from their own threads
            self.output.outputs = (*self.output.outputs, _stream(line + "\n"))

    def _clicked(self, _: object) -> None:
        self.button.disabled = True
        scope = f"phase {self.plan.phase}" if self.plan.phase else "every phase"
        self.output.outputs = (_stream(f"applying {self.plan.lab}, {scope}\n"),)
        self._apply(self._append)
        shown = [self._result_output()]
        if self.error is None:
            self._append("checking again...")
            self.checks = self._recheck()
            shown.append(_display(check_table_html(self.checks.to_list()), repr(self.checks)))
        else:
            self.button.description = f"Retry: {self.label}"
            self.button.disabled = False
        with self._lock:
            self.output.outputs = tuple(shown)

    def _apply(self, progress: Callable[[str], None]) -> None:
        self.error = None
        try:
            self.result = apply_plan(self.lab, self.plan, self._hosts, progress)
        except LabkitError as exc:
            self.error = exc

    def _result_output(self) -> dict[str, Any]:
        if self.error is not None:
            text = f"apply failed: {self.error}"
            return _display(f"<p><b>apply failed</b>: {_escape(str(self.error))}</p>", text)
        assert self.result is not None  # set by _apply when there is no error
        return _display(self.result._repr_html_(), self.result.text())

    def text(self) -> str:
        """What a terminal shows: the result or error when applied, else the plan and a note."""
        if self.error is not None:
            return f"apply failed: {self.error}"
        if self.result is not None:
            return self.result.text()
        note = (
            f"plan only: {changes_phrase(self.plan.pending)} pending; set apply = True to make them"
            if self.plan.pending
            else "nothing to change"
        )
        return f"{self.plan.text()}\n{note}"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if self.widget is not None:
            bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs)
            return bundle
        if self.error is not None or self.result is not None:
            shown = self._result_output()["data"]
            return dict(shown)
        note = self.text().rsplit("\n", 1)[-1]
        return {
            "text/html": redact(self.plan._repr_html_() + f"<p>{_escape(note)}</p>"),
            "text/plain": redact(self.text()),
        }


def _escape(text: str) -> str:
    return html.escape(str(redact(text)))


def confirm(
    lab: Lab,
    planned: Plan,
    apply: bool,
    *,
    hosts: Mapping[str, RemoteHost] | None = None,
) -> Confirmation:
    """Show ``planned``; apply it when ``apply`` (after a click when interactive, at once headless).

    A cell ending with the result shows the plan (and the button), or what was applied.
    A failed headless apply raises, so ``labkit run`` records the notebook as broken.
    """
    shown = Confirmation(lab, planned, apply, interactive=interactive(), hosts=hosts)
    if shown.error is not None:
        raise shown.error
    return shown
