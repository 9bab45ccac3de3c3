"""The container images' Dockerfiles (Dockerfile.worker, Dockerfile.producer) and .dockerignore, parsed for the
rules a regression would break: multi-stage on one pinned slim Python 3.11, a numeric non-root user, an exec-form
command, the runtime environment and OCI labels, dependencies in their own layer before the sources, the Kubernetes
client only in the producer, no dev dependencies, and a build context that holds what is copied and no local state.

The install those Dockerfiles run, replayed: tests/test_packaging_install.py; what both share: tests/docker_images.py.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.docker_images import (
    DEV_TOOLS,
    IMAGES,
    PROJECT,
    REPO,
    WHEEL_BUILD,
    Image,
    builder_stage,
    context_files,
    copy_paths,
    dependency_script,
    dockerignore_rules,
    exec_form,
    flags,
    from_image,
    is_dockerignored,
    key_values,
    parse_dockerfile,
    requirement_name,
    run,
    runs,
)

# The runtime base: Python 3.11 pinned to the minor, the slim variant (optionally a Debian suite or a digest).
BASE_IMAGE = re.compile(r"python:3\.11-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?")
each_image = pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.name)


@each_image
def test_images_are_multi_stage_on_one_pinned_slim_python(image: Image) -> None:
    stages = parse_dockerfile(image.dockerfile)
    assert len(stages) > 1, f"{image.dockerfile.name} should be multi-stage (a builder, then a clean runtime)"
    bases = [from_image(stage)[0] for stage in stages]
    assert BASE_IMAGE.fullmatch(bases[-1]), f"{image.dockerfile.name}: the runtime should be python:3.11-slim"
    # The builder's venv links to its interpreter, so the runtime must be the very same base.
    assert len(set(bases)) == 1, f"{image.dockerfile.name}: every stage should use one base image: {bases}"


@each_image
def test_runtime_runs_as_a_fixed_numeric_non_root_user(image: Image) -> None:
    final = parse_dockerfile(image.dockerfile)[-1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users, f"{image.dockerfile.name}: the runtime stage has no USER, so it would run as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"{image.dockerfile.name}: USER {users[-1]} should be numeric so runAsNonRoot can verify it"
    assert int(match.group(1)) != 0, f"{image.dockerfile.name}: USER {users[-1]} is root"
    assert runs(final, f"--uid {match.group(1)}"), f"{image.dockerfile.name}: create user {match.group(1)} too"


@each_image
def test_command_is_exec_form_so_pid_1_gets_sigterm(image: Image) -> None:
    final = parse_dockerfile(image.dockerfile)[-1]
    commands = [i for i in final if i.keyword == "CMD"]
    assert commands, f"{image.dockerfile.name}: no CMD"
    assert exec_form(commands[-1]) == list(image.command), (
        f"{image.dockerfile.name}: CMD should be {json.dumps(list(image.command))}, not {commands[-1]}"
    )
    for entrypoint in (i for i in final if i.keyword == "ENTRYPOINT"):
        assert exec_form(entrypoint) is not None, f"{image.dockerfile.name}: shell-form ENTRYPOINT in {entrypoint}"


@each_image
def test_runtime_environment_and_labels(image: Image) -> None:
    stages = parse_dockerfile(image.dockerfile)
    env = key_values(stages[-1], "ENV")
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", "no .pyc written at runtime (read-only root FS)"
    assert env.get("PYTHONUNBUFFERED") == "1", "log lines should not sit in a buffer"
    (venv_copy,) = [i for i in stages[-1] if i.keyword == "COPY" and "from" in flags(i)]
    assert env.get("PATH", "").startswith(copy_paths(venv_copy)[1] + "/bin:"), "the venv's bin comes first on PATH"
    labels = key_values(stages[-1], "LABEL")
    oci = "org.opencontainers.image."
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(oci + key), f"{image.dockerfile.name}: no {oci}{key} label"
    assert labels[oci + "version"] == PROJECT["version"], "the version label should follow pyproject.toml"
    assert labels[oci + "licenses"] == PROJECT["license"], "the licenses label should follow pyproject.toml"


@each_image
def test_dependencies_get_their_own_layer_before_the_sources(image: Image) -> None:
    builder = builder_stage(parse_dockerfile(image.dockerfile))
    copies = [(n, copy_paths(i)[0]) for n, i in enumerate(builder) if i.keyword == "COPY"]
    assert copies, f"{image.dockerfile.name}: the builder copies nothing"
    first, manifest = copies[0]
    assert "pyproject.toml" in manifest, "the first COPY should bring pyproject.toml alone (with README.md)"
    assert set(manifest) <= {"pyproject.toml", "README.md"}, (
        f"anything else in the first COPY busts the cache: {manifest}"
    )
    packages = {"task_processor", "producer", "worker"}
    copied = {p.rstrip("/") for _, paths in copies for p in paths}
    assert packages <= copied, f"{image.dockerfile.name}: the builder does not copy {sorted(packages - copied)}"
    sources = [n for n, paths in copies if packages & {p.rstrip("/") for p in paths}]
    dependencies = runs(builder, "pip install -r")
    assert dependencies, f"{image.dockerfile.name}: no RUN installs the dependencies (pip install -r)"
    assert first < dependencies[0] < min(sources), "install the dependencies between pyproject.toml and the sources"
    wheel = runs(builder, WHEEL_BUILD)
    assert wheel, f"{image.dockerfile.name}: the wheel should be built with `{WHEEL_BUILD}`"
    install = runs(builder, "pip install --no-deps", f'/wheels "{image.spec}"')
    assert install, f'{image.dockerfile.name}: install the wheel as "{image.spec}" with --no-deps from /wheels'
    assert max(sources) < wheel[0] <= install[0], "build and install the wheel after the sources are copied"


@each_image
def test_kubernetes_client_only_in_the_producer_image(image: Image) -> None:
    text = image.dockerfile.read_text().lower()
    if image.kube:
        assert f'"{image.spec}"' in text, f"the producer image installs {image.spec}"
    else:
        for word in ("kubernetes", "[kube]", "optional-dependencies"):
            assert word not in text, (
                f"{image.dockerfile.name} mentions {word!r}: the worker image has no cluster client"
            )
    listed = run([sys.executable, "-c", dependency_script(image)], cwd=REPO).stdout.split("\n")
    expected = PROJECT["dependencies"] + [r for extra in image.extras for r in PROJECT["optional-dependencies"][extra]]
    assert [line for line in listed if line] == expected, f"{image.dockerfile.name} installs the wrong dependencies"


@each_image
def test_no_dev_dependencies_in_the_dockerfile(image: Image) -> None:
    text = image.dockerfile.read_text().lower()
    dev = {requirement_name(r) for r in PROJECT["optional-dependencies"]["dev"]} - {"task-processor"}
    for word in sorted(dev | DEV_TOOLS | {"[dev]"}):
        assert word not in text, f"{image.dockerfile.name} mentions the dev dependency {word!r}"


@each_image
def test_copied_paths_exist_and_survive_dockerignore(image: Image) -> None:
    for stage in parse_dockerfile(image.dockerfile):
        for instruction in stage:
            if instruction.keyword not in ("COPY", "ADD") or "from" in flags(instruction):
                continue
            sources, destination = copy_paths(instruction)
            for source in sources:
                assert (REPO / source).exists(), f"{image.dockerfile.name} copies {source!r}, which is not in the repo"
                assert not is_dockerignored(source.rstrip("/"), dockerignore_rules()), (
                    f".dockerignore leaves {source!r} out of the context, but {image.dockerfile.name} copies it"
                )
                root = REPO / source
                wanted = {p.relative_to(REPO).as_posix() for p in ([root] if root.is_file() else root.rglob("*.py"))}
                dropped = wanted - set(context_files(source.rstrip("/")))
                assert not dropped, f".dockerignore drops files {image.dockerfile.name} copies: {sorted(dropped)}"
                # The wheel fixture stages the context in the repository's layout, as these copies do.
                assert destination in ("./", ".", f"./{source}", source), f"unexpected destination in {instruction}"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    rules = dockerignore_rules()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".tools/bin/kubectl",
        "tests/conftest.py",
        ".ruff_cache/CACHEDIR.TAG",
        ".pytest_cache/README.md",
        ".hypothesis/constants/x",
        "producer/__pycache__/api.cpython-311.pyc",
        "task_processor.egg-info/PKG-INFO",
        "dist/task_processor-0.1.0-py3-none-any.whl",
        ".env",
    ):
        assert is_dockerignored(path, rules), f".dockerignore should leave {path} out of the build context"
    for path in ("pyproject.toml", "README.md", "producer/api.py", "worker/cli.py"):
        assert not is_dockerignored(path, rules), f".dockerignore should keep {path}: the build needs it"
