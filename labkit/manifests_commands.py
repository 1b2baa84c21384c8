"""``labkit manifests validate``: prove the Kubernetes manifests offline (exit 0, or 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labkit.arguments import path

__all__ = ["register"]


def _validate(arguments: argparse.Namespace) -> int:
    from labkit import manifests  # noqa: PLC0415 - keep `labkit --help` fast
    from labkit.params import load_lab  # noqa: PLC0415

    root = Path(arguments.root) if arguments.root else manifests.default_root()
    params = arguments.params or [str(manifests.default_root().parent / "params" / "homelab.yaml")]
    lab = load_lab(*params)
    problems = manifests.validate(lab, root)
    if problems:
        print(f"{root}: {len(problems)} problem(s) against {', '.join(params)}", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    documents, _ = manifests.load_documents(root)
    files = len({document.path for document in documents})
    print(
        f"{root}: {len(documents)} documents in {files} files valid; "
        f"pins and cross-object checks hold for lab {lab.name} ({', '.join(params)})"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``manifests validate`` to the ``labkit`` command line."""
    manifests = subparsers.add_parser("manifests", help="work with the Kubernetes manifests")
    actions = manifests.add_subparsers(dest="manifests_command", required=True, metavar="ACTION")
    validate = actions.add_parser(
        "validate",
        help="check schemas, the kustomize/ArgoCD tree, cross-object rules and pins against "
        "params (exit 2 if not)",
    )
    validate.add_argument(
        "--params",
        action="append",
        type=path,
        metavar="FILE",
        help="params file(s) the pins must match (default: the repository's params/homelab.yaml)",
    )
    validate.add_argument(
        "--root",
        type=path,
        metavar="DIR",
        help="manifests folder (default: the repository's manifests/)",
    )
    validate.set_defaults(handler=_validate)
