"""The tree: kustomizations list real files, Applications point at real folders, no duplicates."""

from __future__ import annotations

from pathlib import Path

from labkit.manifests.documents import Document, Problem, is_kustomization, problem, sources

__all__ = ["duplicates", "tree"]


def tree(documents: list[Document], root: Path) -> list[Problem]:
    """Kustomizations list existing files and all of them; Application paths exist."""
    problems: list[Problem] = []
    base = root.parent
    for document in documents:
        if is_kustomization(document):
            problems += _kustomization_files(document, base)
    targets: set[Path] = set()
    for document in documents:
        if document.kind != "Application":
            continue
        for field, source in sources(document):
            path = source.get("path")
            if not isinstance(path, str) or not path.startswith(f"{root.name}/"):
                continue
            target = (base / path).resolve()
            targets.add(target)
            if not target.is_dir():
                problems.append(
                    problem(
                        document,
                        f"{field}.path",
                        f"{path!r} does not exist in this repository; ArgoCD would fail to "
                        "sync (check the spelling against the folders under manifests/)",
                    )
                )
    for document in documents:
        folder = (base / document.path.parent).resolve()
        if is_kustomization(document) and folder not in targets:
            problems.append(
                problem(
                    document,
                    "(folder)",
                    f"no Application points at {document.path.parent}; ArgoCD never deploys it",
                )
            )
    return problems


def _kustomization_files(document: Document, base: Path) -> list[Problem]:
    problems: list[Problem] = []
    folder = base / document.path.parent
    listed: set[Path] = set()
    resources = document.data.get("resources") or []
    if not isinstance(resources, list):
        return [problem(document, "resources", "must be a list of file or folder names")]
    for index, entry in enumerate(resources):
        if not isinstance(entry, str) or "://" in entry:
            continue  # remote bases are kustomize's business, not a file here
        target = (folder / entry).resolve()
        listed.add(target)
        if not target.exists():
            problems.append(
                problem(
                    document,
                    f"resources.{index}",
                    f"{entry!r} does not exist in {document.path.parent}",
                )
            )
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        if path.name in {"kustomization.yaml", "kustomization.yml"}:
            continue
        if path.resolve() not in listed:
            problems.append(
                problem(
                    document,
                    "resources",
                    f"{path.name} is in the folder but not listed; kustomize would ignore it",
                )
            )
    return problems


def duplicates(documents: list[Document], kustomizations: dict[Path, str]) -> list[Problem]:
    """The same object defined twice (ArgoCD would flip between the two)."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str, str, str], Document] = {}
    for document in documents:
        if is_kustomization(document) or not document.kind:
            continue
        namespace = document.namespace or kustomizations.get(document.path.parent, "")
        key = (document.group, document.kind, namespace, document.name)
        if key in seen:
            first = seen[key]
            problems.append(
                problem(
                    document,
                    "metadata.name",
                    f"{document.kind} {namespace}/{document.name} is also defined in "
                    f"{first.path} ({first.label}); ArgoCD would fight over it",
                )
            )
        seen.setdefault(key, document)
    return problems
