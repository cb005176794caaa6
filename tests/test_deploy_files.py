"""The Dockerfile and the Kubernetes examples say what the code does.

No container engine can build the image on these machines (no registry to pull the base image
from), so this checks the Dockerfile's facts and tests/test_packaging.py runs what it runs (the
wheel, its commands, the entrypoint). The Kubernetes args are parsed by the command's own parser,
for every shard index the Indexed Job produces.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from regression_tracking.management.commands.cleanup_orphaned_regressions import Command
from tests.test_packaging import WHEEL_SOURCES
from tests.utils import ROOT

DOCKERFILE = ROOT / "Dockerfile"
CRONJOB = ROOT / "docs" / "kubernetes-cronjob.yaml"
INDEXED_JOB = ROOT / "docs" / "kubernetes-indexed-job.yaml"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, arguments = line.strip().partition(" ")
            instructions.append((instruction.upper(), " ".join(arguments.split())))
    return instructions


def image_commands() -> list[list[str]]:
    """The console-script commands the Dockerfile's RUN steps execute, and its CMD."""
    commands = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "RUN":
            for step in arguments.split("&&"):
                words = shlex.split(step)
                if words and words[0] == "regression-tracking":
                    commands.append(words[1:])
        if instruction == "CMD":
            commands.append(json.loads(arguments))
    return commands


def test_dockerfile_builds_from_the_slim_python_base_and_the_wheel_sources() -> None:
    instructions = dockerfile_instructions()
    bases = [
        arguments.split()[0] for instruction, arguments in instructions if instruction == "FROM"
    ]
    assert bases == ["python:3.11-slim", "python:3.11-slim"]
    copied = [
        arguments.split()[:-1]
        for instruction, arguments in instructions
        if instruction == "COPY" and not arguments.startswith("--from")
    ]
    assert sorted(source for sources in copied for source in sources) == sorted(WHEEL_SOURCES)
    runs = " ".join(arguments for instruction, arguments in instructions if instruction == "RUN")
    assert "pip wheel" in runs
    assert '--no-index --find-links /tmp/wheels "regression-tracking[' in runs


def test_dockerfile_runs_as_a_non_root_user_with_the_console_script_as_entrypoint() -> None:
    instructions = dict(dockerfile_instructions())  # the last of each instruction
    user = instructions["USER"].split(":")[0]
    assert user not in {"root", "0"}
    assert "useradd" in " ".join(a for i, a in dockerfile_instructions() if i == "RUN")
    assert json.loads(instructions["ENTRYPOINT"]) == ["regression-tracking"]


def test_dockerignore_sends_only_the_wheel_sources() -> None:
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert sorted(line[1:].rstrip("/") for line in lines if line.startswith("!")) == sorted(
        WHEEL_SOURCES
    )


def test_the_image_holds_every_extra_gunicorn_among_them() -> None:
    runs = " ".join(
        arguments for instruction, arguments in dockerfile_instructions() if instruction == "RUN"
    )
    built = re.search(r'pip wheel [^&]*"\.\[([a-z,]+)\]"', runs)
    installed = re.search(r'pip install [^&]*"regression-tracking\[([a-z,]+)\]"', runs)
    assert built, runs
    assert installed, runs
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    assert set(built.group(1).split(",")) == set(installed.group(1).split(",")) == extras
    # The serve extra: the WSGI server docs/deployment.md runs from the image.
    assert [
        dependency.split(">")[0] for dependency in project["optional-dependencies"]["serve"]
    ] == ["gunicorn"]


def test_the_image_commands_are_the_ones_the_packaging_test_runs() -> None:
    assert image_commands() == [
        ["collectstatic", "--no-input", "-v", "0"],
        ["help", "cleanup_orphaned_regressions"],
    ]


def container_args(manifest: Path) -> list[str]:
    """The ``args`` list of the manifest's (single) container, comments dropped."""
    lines = manifest.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "args:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    args = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if len(line) - len(line.lstrip()) <= indent or not stripped.startswith("- "):
            break
        args.append(stripped[2:])
    return args


def manifest_value(manifest: Path, key: str) -> str:
    match = re.search(rf"^\s*{key}:\s*(\S+)\s*$", manifest.read_text(), flags=re.MULTILINE)
    assert match, key
    return match.group(1)


def parse_cleanup_args(args: list[str]) -> dict[str, object]:
    assert args[0] == "cleanup_orphaned_regressions"
    parser = Command().create_parser("regression-tracking", args[0])
    return vars(parser.parse_args(args[1:]))


@pytest.mark.parametrize("manifest", [CRONJOB, INDEXED_JOB], ids=["cronjob", "indexed_job"])
def test_kubernetes_examples_use_the_image_and_its_entrypoint(manifest: Path) -> None:
    image = manifest_value(manifest, "image")
    assert image.startswith("registry.example.com/regression-tracking:")
    args = container_args(manifest)
    # The entrypoint is the console script: args start with the command, no python/manage.py.
    assert args[0] == "cleanup_orphaned_regressions"
    assert "manage.py" not in manifest.read_text()


def test_cronjob_args_are_options_the_command_accepts() -> None:
    options = parse_cleanup_args(container_args(CRONJOB))
    assert options["action"] == "deactivate"
    assert options["shard"] is None
    assert manifest_value(CRONJOB, "concurrencyPolicy") == "Forbid"


def test_indexed_job_runs_one_shard_per_completion_index() -> None:
    assert manifest_value(INDEXED_JOB, "completionMode") == "Indexed"
    completions = int(manifest_value(INDEXED_JOB, "completions"))
    assert int(manifest_value(INDEXED_JOB, "parallelism")) == completions
    args = container_args(INDEXED_JOB)
    assert f"--shard=$(JOB_COMPLETION_INDEX)/{completions}" in args
    backups = set()
    for index in range(completions):
        # What Kubernetes passes to pod `index` after expanding $(JOB_COMPLETION_INDEX).
        expanded = [arg.replace("$(JOB_COMPLETION_INDEX)", str(index)) for arg in args]
        options = parse_cleanup_args(expanded)
        assert options["shard"] == (index, completions)
        backups.add(options["backup"])
    assert len(backups) == completions  # one backup file per shard
