"""Deployments: the same assets on a laptop, a cluster of machines, or
Kubernetes, chosen by one environment variable (DIFFMINE_DEPLOYMENT).

What differs per deployment is configuration, never code: where the lake is
(a folder, or an object-store URL), where runs and steps execute (each run
in a process of its own on this machine, its steps in it; each run a task on
a Celery worker, on the `gpu` or `cpu` queue; one Kubernetes job per run and
per step), and the instance (deploy/<name>/dagster.yaml:
SQLite beside the project, or Postgres). Hosts and secrets come from the
environment only. docs/DEPLOY.md walks through each.
"""

from __future__ import annotations

import os

from .mining.config.project import LAKE_ENV

DEPLOYMENT_ENV = "DIFFMINE_DEPLOYMENT"
BROKER_ENV = "DIFFMINE_CELERY_BROKER"
BACKEND_ENV = "DIFFMINE_CELERY_BACKEND"
POSTGRES_ENV = "DAGSTER_POSTGRES_URL"
LOG_BUCKET_ENV = "DIFFMINE_LOG_BUCKET"

# the environment each deployment needs before it can load
REQUIRED = {
    "local": (),
    "cluster": (LAKE_ENV, BROKER_ENV, BACKEND_ENV, POSTGRES_ENV, LOG_BUCKET_ENV),
    "kubernetes": (LAKE_ENV, POSTGRES_ENV, LOG_BUCKET_ENV),
}
DEPLOYMENTS = tuple(REQUIRED)


class DeploymentError(ValueError):
    pass


def deployment_name() -> str:
    name = os.environ.get(DEPLOYMENT_ENV, "local").strip() or "local"
    if name not in REQUIRED:
        raise DeploymentError(f"{DEPLOYMENT_ENV}={name!r} is not a deployment; expected one of {', '.join(DEPLOYMENTS)}")
    missing = [v for v in REQUIRED[name] if not os.environ.get(v)]
    if missing:
        raise DeploymentError(f"the {name} deployment needs {', '.join(missing)} in the environment (docs/DEPLOY.md)")
    return name


def executor_for(name: str):
    """The executor of every job in this deployment: the run's own process
    (local, cluster) or a Kubernetes job per step."""
    if name in ("local", "cluster"):
        # A run already has a process of its own (the UI's run worker, the
        # command line, or a Celery task in a worker process: the run
        # launcher of deploy/cluster/dagster.yaml), and its steps run in it.
        # That keeps torch and the model warm between steps; a process per
        # step (Dagster's default) spent about 6 s importing torch and the
        # definitions before each of a label run's dozen steps and checks
        # (a one-step UI run took 22 s, 7 of them computing), and its steps
        # could not overlap anyway: torch steps share one `torch` pool slot
        # on a small machine. A prefork Celery worker's children cannot fork.
        from dagster import in_process_executor

        return in_process_executor
    if name == "kubernetes":
        from dagster_k8s import k8s_job_executor

        # one pod per step; torch steps ask for a GPU (GPU_STEP_TAGS)
        return k8s_job_executor.configured(
            {"env_vars": [LAKE_ENV, DEPLOYMENT_ENV, "AWS_ENDPOINT_URL"], "max_concurrent": 8},
            name="k8s_steps",
        )
    raise DeploymentError(f"no executor for the deployment {name!r}; expected one of {', '.join(DEPLOYMENTS)}")


# The Celery queue of a run (CeleryRunLauncher reads it from the run's tags).
QUEUE_TAG = "dagster-celery/queue"


def run_queue_tags(uses_torch: bool) -> dict[str, str]:
    return {QUEUE_TAG: "gpu" if uses_torch else "cpu"}
