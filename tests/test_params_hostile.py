"""Params under hostile input: every bad file is a ConfigError naming the file (exit 2, no
traceback), and the loader's memory and time stay bounded, measured under resource limits."""

from __future__ import annotations

import copy
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from labkit.cli import main
from labkit.errors import ConfigError
from labkit.params import MAX_BYTES, MAX_DEPTH, MAX_LAYERS, MAX_NODES, load_lab, load_layers
from tests.bounded import run_labkit

REPOSITORY = Path(__file__).resolve().parent.parent
LOCAL = REPOSITORY / "params" / "local.yaml"
MEMORY_LIMIT = 1024**3  # address space of the `labkit params validate` under test
CPU_LIMIT_S = 20
WALL_LIMIT_S = 60


def _validate(*files: str | Path) -> subprocess.CompletedProcess[str]:
    """``labkit params validate FILE...`` in a child bounded in memory, CPU and wall time."""
    return run_labkit(
        "params",
        "validate",
        *map(str, files),
        memory_bytes=MEMORY_LIMIT,
        cpu_s=CPU_LIMIT_S,
        wall_s=WALL_LIMIT_S,
    )


def _laughs(levels: int = 10, width: int = 10) -> str:
    """The "billion laughs": each anchor a list of ``width`` aliases of the one before."""
    lines = ["lol0: &lol0 ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol']"]
    for level in range(1, levels):
        aliases = ", ".join([f"*lol{level - 1}"] * width)
        lines.append(f"lol{level}: &lol{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def _deep_aliases() -> str:
    """Shallow as written, 4 x 40 levels deep once each alias stands for its anchor."""
    lines = [f"a0: &a0 {'[' * 40}1{']' * 40}"]
    lines += [f"a{i}: &a{i} {'[' * 40}*a{i - 1}{']' * 40}" for i in range(1, 4)]
    return "\n".join(lines) + "\n"


# name -> (file text or a maker, text the refusal must contain)
UNBOUNDED_BEFORE = {
    "laughs": (_laughs(), f"expands to more than {MAX_NODES:,} YAML nodes"),
    "deep-lists": ("x: " + "[" * 5000 + "]" * 5000 + "\n", f"deeper than {MAX_DEPTH} levels"),
    "deep-maps": ("x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", f"deeper than {MAX_DEPTH}"),
    "deep-aliases": (_deep_aliases(), f"deeper than {MAX_DEPTH} levels once its aliases"),
    "many-nodes": ("x: [" + "1," * 300_000 + "1]\n", f"more than {MAX_NODES:,} YAML nodes"),
    "extends-dev-zero": (
        "extends: /dev/zero\n",
        "/dev/zero (named by 'extends' in ",
    ),
}


def test_the_billion_laughs_file_is_small() -> None:
    assert len(_laughs().encode()) < 1500  # the 1.4 KB file


@pytest.mark.parametrize(("name", "case"), sorted(UNBOUNDED_BEFORE.items()))
def test_a_hostile_file_is_refused_within_bounds(
    name: str, case: tuple[str, str], tmp_path: Path
) -> None:
    text, expected = case
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    done = _validate(path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{path}: invalid" in done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_not_a_params_file(device: str) -> None:
    done = _validate(device)
    assert done.returncode == 2
    assert f"{device}: is a character device; a params file is read only from a regular file" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "params.yaml"
    os.mkfifo(fifo)
    (tmp_path / "child.yaml").write_text("extends: params.yaml\n")
    done = _validate(fifo, tmp_path / "child.yaml")  # an open() would block: the timeout says
    assert done.returncode == 2
    assert f"{fifo}: is a FIFO (named pipe)" in done.stderr
    assert f"{fifo} (named by 'extends' in {tmp_path / 'child.yaml'}): is a FIFO" in done.stderr


@pytest.mark.parametrize("size", [MAX_BYTES + 1, 5 * 1024**3])
def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path, size: int) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as handle:
        handle.write(b"# a comment\n")
        handle.truncate(size)  # sparse: 5 GiB costs no disk here, but would cost the reader
    done = _validate(path)
    assert done.returncode == 2
    assert f"its size ({size:,} bytes) is more than the 1 MiB a params file may be" in done.stderr


def test_a_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    text = LOCAL.read_text().replace("extends: base.yaml", f"extends: {LOCAL.parent}/base.yaml")
    path = tmp_path / "padded.yaml"
    path.write_text(text + "#" * (MAX_BYTES - len(text.encode()) - 1) + "\n")
    assert path.stat().st_size == MAX_BYTES
    assert load_lab(path).name == "sandbox"


def test_a_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "child.yaml").write_text("extends: ..\n")
    assert main(["params", "validate", str(tmp_path), str(tmp_path / "child.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: is a directory; a params file is read only from a regular file" in err
    assert f"{tmp_path / '..'} (named by 'extends' in {tmp_path / 'child.yaml'})" in err


def test_a_long_extends_chain_is_refused(tmp_path: Path) -> None:
    last = MAX_LAYERS + 5
    for index in range(last):
        (tmp_path / f"layer{index}.yaml").write_text(f"extends: layer{index + 1}.yaml\n")
    (tmp_path / f"layer{last}.yaml").write_text("name: deep\n")
    with pytest.raises(ConfigError, match=f"longer than {MAX_LAYERS} files, the limit"):
        load_layers(tmp_path / "layer0.yaml")
    # A chain of exactly MAX_LAYERS files still layers.
    data, sources = load_layers(tmp_path / f"layer{last - MAX_LAYERS + 1}.yaml")
    assert data == {"name": "deep"}
    assert len(sources) == MAX_LAYERS


def test_merge_keys_within_the_bounds_still_work(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(
        f"extends: '{LOCAL}'\n"
        "nodes:\n"
        "  - &node {name: k3s-node-01, address: 10.77.0.11, ssh_user: root, ssh_port: 2201}\n"
        + "".join(f"  - {{<<: *node, name: n{i}, address: 10.77.0.{20 + i}}}\n" for i in range(40))
        + "k3s: {cluster_init_node: k3s-node-01}\n"
    )
    lab = load_lab(tmp_path / "lab.yaml")
    assert len(lab.nodes) == 41
    assert {node.ssh_port for node in lab.nodes} == {2201}


# file text -> what the refusal says (each in-process through the CLI: exit 2, no traceback)
REFUSED = {
    "recursive-alias": (
        "a: &a [*a]\n",
        "line 1, column 4: an alias refers to a node that contains",
    ),
    "nul-byte": ("name: a\x00b\n", "line 1, column 8: character U+0000 is not allowed in YAML"),
    "nul-escape": ('name: "a\\0b"\n', ": name: contains a NUL character"),
    "nul-in-key": ('"a\\0b": 1\n', ": a\x00b: contains a NUL character"),
    "lone-surrogate": ('description: "\\ud800"\n', "description: contains a lone surrogate"),
    "not-utf8": ("name: caf\xe9\n", "not UTF-8 text (byte 9)"),
    "bare-scalar": ("just a string\n", "the top level must be a mapping, got str"),
    "bare-list": ("- a\n- b\n", "the top level must be a mapping, got list"),
    "duplicate-key": ("name: a\nname: b\n", "line 2, column 1: duplicate key 'name'"),
    "huge-integer": ("x: " + "9" * 5000 + "\n", "is not a valid int: Exceeds the limit"),
    "impossible-date": ("x: 2001-13-45\n", "'2001-13-45' is not a valid timestamp: month must be"),
    "bad-base64": ("x: !!binary 'a'\n", "failed to decode base64 data"),
    "python-object": ("x: !!python/object:os.system {}\n", "could not determine a constructor"),
    "extends-not-a-name": ("extends: [a, b]\n", "extends: expected a file name, got ['a', 'b']"),
    "extends-missing": ("extends: nowhere.yaml\n", "cannot be read (No such file or directory)"),
}


@pytest.mark.parametrize(("name", "case"), sorted(REFUSED.items()))
def test_a_bad_file_is_a_config_error(
    name: str, case: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = case
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(text.encode("utf-8") if name != "not-utf8" else text.encode("latin-1"))
    assert main(["params", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert f"{path}: invalid" in captured.err
    assert expected in captured.err
    assert "Traceback" not in captured.err + captured.out


def _over(data: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    """A copy of ``data`` with the field at ``dotted`` (``redis.port``, ``nodes.0.name``) set."""
    changed = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    holder: Any = changed
    for part in parents:
        holder = holder[int(part)] if isinstance(holder, list) else holder[part]
    if isinstance(holder, list):
        holder[int(last)] = value
    else:
        holder[last] = value
    return changed


def _leaves(value: object, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, f"{path}.{key}")]
    if isinstance(value, list) and value:
        return [
            leaf for index, item in enumerate(value) for leaf in _leaves(item, f"{path}.{index}")
        ]
    return [path.lstrip(".")]


LAB, _ = load_layers(LOCAL)
FIELDS = sorted(set(_leaves(LAB)) | {"redis", "targets", "nodes", "name"})
NUMERIC = [
    "nodes.0.ssh_port",
    "ssh.connect_timeout_s",
    "redis.replicas",
    "redis.down_after_ms",
    "istio.timeout_s",
    "istio.rate_limit.requests",
    "targets.redirect_p99_ms",
    "targets.redis_latency_us.1",
    "targets.rate_steps.0",
    "targets.ladder.max_rps",
    "targets.step_duration_s",
    "drills.rate_rps",
    "drills.duration_s",
]

_SCALARS = st.one_of(
    st.integers(min_value=-(10**300), max_value=10**300),
    st.sampled_from([0, -1, 2**63, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e308, -0.0, 5e-324]),
    st.booleans(),
    st.none(),
    st.text(max_size=40),
    st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=20),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x" * 200_000, "../../etc/passwd", "1e400"]),
)
HOSTILE = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _check(data: dict[str, Any], path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Validate ``data`` at ``path``: a valid lab, or exit 2 with a message, never a crash."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["params", "validate", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    if code == 0:
        lab = load_lab(path)
        lab.model_dump_json()  # a lab that validates is one that serializes (no inf, no NaN)
        return
    assert code == 2
    assert f"{path}: invalid\n  - " in captured.err
    assert len(captured.err) < 10_000  # a 200,000-character value is named, not printed


@given(field=st.sampled_from(FIELDS), value=HOSTILE)
def test_any_value_in_any_field_validates_or_is_a_config_error(
    field: str, value: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(_over(LAB, field, value), tmp_path / "lab.yaml", capsys)


@given(
    field=st.sampled_from(NUMERIC),
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**300), max_value=10**300),
        st.sampled_from([math.inf, math.nan, 1e400, 10**100, 2**64]),
    ),
)
def test_a_numeric_field_is_finite_and_bounded(
    field: str, value: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lab.yaml"
    _check(_over(LAB, field, value), path, capsys)
    if not math.isfinite(value) or abs(value) > 10**9:  # nothing in a lab is that large
        with pytest.raises(ConfigError):
            load_lab(path)


@pytest.mark.parametrize("written", [".inf", "1e400", ".nan", "-.inf"])
def test_infinity_and_nan_are_no_number_of_seconds(
    written: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(f"extends: '{LOCAL}'\ntargets: {{step_duration_s: {written}}}\n")
    assert main(["params", "validate", str(path)]) == 2
    assert "targets.step_duration_s: Input should be a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("field", FIELDS)
def test_a_wall_of_text_in_any_field_is_named_not_printed(
    field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(_over(LAB, field, "x" * 100_000), tmp_path / "lab.yaml", capsys)


@pytest.mark.parametrize("key", ["k" * 100_000, "password" * 12_500])
def test_a_wall_of_text_as_a_key_is_named_not_printed(
    key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lab.yaml"
    _check(_over(LAB, f"redis.{key}", "value"), path, capsys)
    with pytest.raises(ConfigError, match=r"redis\.(kkkk|pass).*\(100,006 characters\)"):
        load_lab(path)
