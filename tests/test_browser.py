"""The lab-book as a person uses it: JupyterLab in Chromium (Playwright), notebooks 00 and 01.

The test starts ``labkit lab`` (what ``make lab`` runs) on loopback for a private
sandbox, serving a copy of the lab-book (JupyterLab saves what runs in it), and drives
the system's Chromium through Playwright (``executable_path``; nothing is downloaded).
The kernels get the private params through LABKIT_PARAMS_OVERRIDE, as under nbval.
Screenshots of every notebook are taken as it goes; when a test fails they are kept
under ``outputs/browser-test/`` and named in the failure (always, with
LABKIT_KEEP_SCREENSHOTS=1).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.notebook import PARAMS_OVERRIDE
from tests.conftest import REPOSITORY
from tests.labserver import LabServer, running_lab

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the tests skip; the name is only caught
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTEFACTS = REPOSITORY / "outputs" / "browser-test"
SHOWN = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab in front
_IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle'] >> visible=true"
_RUN_TIMEOUT_S = 420.0


def _missing() -> str:
    if not CHROMIUM.exists():
        return f"no {CHROMIUM}: apt-get install chromium (make test installs it as root)"
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(module) is None:
            return f"Python package {package} is not installed (pip install -e '.[test]')"
    return ""


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(bool(_missing()), reason=_missing() or "-"),
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, private_sandbox_params: Callable[..., Path]
) -> Iterator[LabServer]:
    """``labkit lab`` for a private sandbox (brought up by it, taken down when it stops)."""
    directory = tmp_path_factory.mktemp("browser-lab")
    params = private_sandbox_params(directory, name="browser-test")
    # JupyterLab saves what the browser runs or edits: it serves a copy, never the
    # repository's notebooks (committed without outputs, apply = False).
    root = directory / "lab-book"
    for folder in ("notebooks", "params"):
        shutil.copytree(REPOSITORY / folder, root / folder)
    environment = {PARAMS_OVERRIDE: str(params)}
    with running_lab(params, directory, env=environment, root=root) as running:
        yield running


@pytest.fixture
def page(server: LabServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh Chromium profile and page; screenshots kept when the test fails."""
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with (
        sync_playwright() as playwright,
        tempfile.TemporaryDirectory(prefix="labkit-chromium-") as profile,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        browser_page = context.pages[0] if context.pages else context.new_page()
        browser_page.shots = shots  # type: ignore[attr-defined]
        browser_page.test_name = request.node.name  # type: ignore[attr-defined]
        try:
            yield browser_page
        finally:
            context.close()
        if os.environ.get("LABKIT_KEEP_SCREENSHOTS"):  # to look at them after a passing run
            shutil.copytree(shots, ARTEFACTS / request.node.name, dirs_exist_ok=True)


@contextlib.contextmanager
def kept_on_failure(page: Any) -> Iterator[None]:
    """Around a test's steps: on any failure, its screenshots go to outputs/browser-test/."""
    try:
        yield
    except BaseException as failure:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(page.shots / "at-failure.png"), full_page=True)
        kept = ARTEFACTS / f"{page.test_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copytree(page.shots, kept, dirs_exist_ok=True)
        print(f"screenshots kept in {kept}")
        if isinstance(failure, AssertionError):
            raise AssertionError(f"{failure}\n(screenshots: {kept})") from failure
        raise


def _open(page: Any, server: LabServer, notebook: str) -> None:
    page.goto(f"{server.base}/lab/tree/notebooks/{notebook}?token={server.token}")
    page.wait_for_selector(f"{SHOWN} .jp-CodeCell", timeout=90_000)
    with contextlib.suppress(PlaywrightTimeout):  # "Select Kernel" when the session is new
        page.locator(".jp-Dialog button.jp-mod-accept").click(timeout=3_000)
    page.wait_for_selector(_IDLE, timeout=90_000)


def _no_news_prompt(page: Any) -> bool:
    return page.get_by_text("notified about official Jupyter news").count() == 0


def _prompts(page: Any) -> list[str]:
    return [
        text.strip()
        for text in page.eval_on_selector_all(
            f"{SHOWN} .jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent)"
        )
    ]


def _run_all(page: Any) -> None:
    """Run > Run All Cells, then wait until no cell is running or queued."""
    page.click(".lm-MenuBar-item:has-text('Run')")
    page.click(".lm-Menu-item[data-command='runmenu:run-all']")
    deadline = time.monotonic() + _RUN_TIMEOUT_S
    time.sleep(1)
    while any(prompt.startswith("[*]") for prompt in _prompts(page)):
        assert time.monotonic() < deadline, f"cells still running: {_prompts(page)}"
        time.sleep(1)
    page.wait_for_selector(_IDLE)


def _shoot(page: Any, name: str) -> None:
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)
    for index, output in enumerate(page.query_selector_all(f"{SHOWN} .jp-OutputArea")):
        if output.is_visible() and output.bounding_box():
            output.scroll_into_view_if_needed()
            output.screenshot(path=str(page.shots / f"{name}-output-{index}.png"))


def _errors(page: Any) -> list[str]:
    """Text of every error or stderr output shown."""
    return list(
        page.eval_on_selector_all(
            f"{SHOWN} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
            "els => els.map(e => e.textContent)",
        )
    )


def _table_layout_problems(page: Any) -> list[str]:
    """labkit tables cut at the right edge, or an id / "took" cell squeezed or clipped."""
    return list(
        page.evaluate(
            """() => {
        const problems = [];
        for (const table of document.querySelectorAll('table.labkit-table')) {
          if (!table.offsetParent) continue;  // folded away
          const area = table.closest('.jp-OutputArea-output') || table.parentElement;
          const right = table.getBoundingClientRect().right;
          if (right > area.getBoundingClientRect().right + 1)
            problems.push(`table wider than its output (${right})`);
          for (const cell of table.querySelectorAll('td.labkit-nowrap'))
            if (cell.scrollWidth > cell.clientWidth + 1)
              problems.push(`"${cell.textContent}" cut (${cell.scrollWidth}>${cell.clientWidth})`);
          for (const head of table.querySelectorAll('th'))
            if (head.textContent === 'check' && head.getBoundingClientRect().width < 150)
              problems.push(`check column squeezed to ${head.getBoundingClientRect().width}px`);
        }
        return problems;
      }"""
        )
    )


def _status_by_id(where: Any, prefix: str) -> list[tuple[str, str]]:
    """(id, status) of the check rows whose id starts with ``prefix``, shown in ``where``."""
    rows = where.locator("table.labkit-table tr").evaluate_all(
        """rows => rows.map(r => [r.cells[0] && r.cells[0].textContent,
                               (r.querySelector('.labkit-badge') || {}).textContent])"""
    )
    return [(str(i), str(s)) for i, s in rows if i and s and str(i).startswith(prefix)]


def test_notebook_00_in_jupyterlab(page: Any, server: LabServer) -> None:
    with kept_on_failure(page):
        _open(page, server, "00-preflight.ipynb")
        _run_all(page)
        _shoot(page, "00-preflight")
        assert _no_news_prompt(page)  # nothing asks to fetch from the internet
        prompts = _prompts(page)
        assert all(re.fullmatch(r"\[\d+\]:", prompt) for prompt in prompts), prompts
        assert _errors(page) == []
        assert _table_layout_problems(page) == []
        assert _status_by_id(page, "0.1.") and all(
            s != "error" for _, s in _status_by_id(page, "0.")
        )
        summary = page.locator("details.labkit-long > summary", has_text="roadmap items")
        count = int(summary.inner_text().split()[0])
        summary.click()  # unfold: every item is there, none cut
        rows = page.locator("details.labkit-long[open] table.labkit-table tr")
        assert rows.count() == count + 1  # with its head
        _shoot(page, "00-preflight-coverage-open")
        assert _table_layout_problems(page) == []


def test_notebook_01_in_jupyterlab(page: Any, server: LabServer) -> None:
    with kept_on_failure(page):
        _open(page, server, "01-infrastructure.ipynb")
        _run_all(page)
        _shoot(page, "01-infrastructure")
        prompts = _prompts(page)
        assert all(re.fullmatch(r"\[\d+\]:", prompt) for prompt in prompts), prompts
        assert _errors(page) == []
        assert _table_layout_problems(page) == []
        checked = _status_by_id(page, "1.1.")
        assert any(s == "pass" for _, s in checked), checked
        assert all(s in {"pass", "skip"} for _, s in checked), checked


def test_notebook_01_confirm_button_applies(page: Any, server: LabServer) -> None:
    """README: with apply = True a confirm button appears; clicking it applies phase 1."""
    with kept_on_failure(page):
        _open(page, server, "01-infrastructure.ipynb")
        page.locator(f"{SHOWN} .jp-CodeCell .cm-content").first.click()
        page.keyboard.press("Control+a")
        page.keyboard.type('params_file = "../params/local.yaml"\napply = True\n')
        _run_all(page)
        button = page.locator(f"{SHOWN} .jp-OutputArea button", has_text="Apply")
        button.wait_for(timeout=60_000)
        _shoot(page, "01-apply-before-click")
        inside = page.locator(".jp-OutputArea button", has_text="Apply")  # relative to a cell
        cell = page.locator(f"{SHOWN} .jp-CodeCell", has=inside)
        cell.scroll_into_view_if_needed()
        # text_content: JupyterLab renders only the cells in view, so innerText can be empty
        assert "Nothing changes until you click" in (cell.text_content() or "")
        assert re.search(r"[1-9]\d* changes? pending", cell.text_content() or "")
        label = button.inner_text()
        assert button.evaluate("b => b.scrollWidth <= b.clientWidth"), f"label cut: {label}"
        assert cell.locator("table.labkit-plan").count() == 1  # one plan table
        button.click()
        deadline = time.monotonic() + _RUN_TIMEOUT_S
        while True:
            shown = cell.text_content() or ""
            statuses = _status_by_id(cell, "1.2.")
            if "Evidence of" in shown and statuses:
                break
            assert time.monotonic() < deadline, f"after the click: {shown[-2000:]}"
            time.sleep(2)
        _shoot(page, "01-apply-after-click")
        assert "Nothing changes until you click" not in shown  # the pending plan was replaced
        assert cell.locator("table.labkit-plan").count() == 1 and "0 changes pending" in shown
        assert any(status == "pass" for _, status in statuses), statuses
        assert all(status in {"pass", "skip"} for _, status in statuses), statuses
        assert _errors(page) == []
