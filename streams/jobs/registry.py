"""`JOB_BACKENDS`: backend name -> factory of its `JobLauncher`. An explicit dict.

Only the local backend is imported eagerly. The others import their client
library (`docker`, `kubernetes`, `boto3`) when first built, so a worker that
never runs a Kubernetes job does not need the package; a missing one raises
`JobsConfigError` naming the package to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from streams.jobs.exceptions import JobsConfigError
from streams.jobs.launcher import JobLauncher
from streams.jobs.settings import JobSettings


def _local(settings: JobSettings) -> JobLauncher:
    from streams.jobs.backends.local import LocalLauncher

    return LocalLauncher(kill_grace_s=settings.kill_grace_s)


def _docker(settings: JobSettings) -> JobLauncher:
    require_package("docker", "docker", "docker")
    from streams.jobs.backends.docker import DockerLauncher

    return DockerLauncher.from_environment()


def _kubernetes(settings: JobSettings) -> JobLauncher:
    require_package("kubernetes", "kubernetes", "kubernetes")
    from streams.jobs.backends.kubernetes import KubernetesLauncher

    return KubernetesLauncher.from_environment()


def _ecs(settings: JobSettings) -> JobLauncher:
    require_package("boto3", "boto3", "ecs")
    from streams.jobs.backends.ecs import EcsLauncher

    return EcsLauncher.from_environment()


# name -> factory(runner settings) of the backend's launcher
JOB_BACKENDS: dict[str, Callable[[JobSettings], JobLauncher]] = {
    "local": _local,
    "docker": _docker,
    "kubernetes": _kubernetes,
    "ecs": _ecs,
}


def require_package(module: str, distribution: str, backend: str) -> None:
    """Import `module` or raise a `JobsConfigError` telling which package to install."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise JobsConfigError(
            f"the {backend} job backend needs the Python package {distribution!r}, "
            f"which is not installed ({exc})",
            hint=f"pip install '{distribution}' in the worker's environment, "
            f"or change the rule's backend",
        ) from exc


def build_launcher(name: str, settings: JobSettings | None = None) -> JobLauncher:
    """A new launcher for backend `name`; `JobsConfigError` for an unknown name."""
    factory = JOB_BACKENDS.get(name)
    if factory is None:
        raise JobsConfigError(
            f"unknown job backend {name!r}",
            hint=f"use one of {', '.join(sorted(JOB_BACKENDS))}",
        )
    return factory(settings or JobSettings())
