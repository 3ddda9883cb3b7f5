"""The deployments' configuration, checked against Dagster's own schemas
(no cluster runs here: the Kubernetes pieces are validated, not started)."""


import pytest
import yaml

from dagster._config import process_config, validate_config
from dagster._core.instance.config import dagster_instance_config
from diffmine_assets_tests.conftest import REPO

pytestmark = pytest.mark.cluster

DEPLOY = REPO / "deploy"
ENV = {"DAGSTER_POSTGRES_URL": "postgresql+psycopg2://u:p@db:5432/dagster", "DIFFMINE_CELERY_BROKER": "redis://r:6379/0",
       "DIFFMINE_CELERY_BACKEND": "redis://r:6379/1", "DIFFMINE_LOG_BUCKET": "logs", "AWS_ENDPOINT_URL": "http://s3:9000",
       "DIFFMINE_K8S_NAMESPACE": "diffmine", "DIFFMINE_LAKE_URL": "s3://lake/x"}


def _instance(name: str, monkeypatch) -> dict:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cfg, _ = dagster_instance_config(str(DEPLOY / name))  # validates against the instance schema
    return cfg


def _valid(schema, value) -> dict:
    result = validate_config(schema, value)
    assert result.success, [e.message for e in result.errors]
    return process_config(schema, value).value


def test_the_local_deployment_is_todays_instance():
    assert (DEPLOY / "local" / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()


def test_the_cluster_instance_validates(monkeypatch):
    from dagster_celery.launcher import CeleryRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    cfg = _instance("cluster", monkeypatch)
    assert set(cfg["storage"]) == {"postgres"}
    _valid(CeleryRunLauncher.config_type(), cfg["run_launcher"]["config"])
    _valid(S3ComputeLogManager.config_type(), cfg["compute_logs"]["config"])
    assert cfg["concurrency"]["runs"]["tag_concurrency_limits"] == [{"key": "dagster/backfill", "limit": 2}]
    assert cfg["run_monitoring"]["enabled"] and cfg["run_retries"]["enabled"]
    # the workers' settings are the executor's schema
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("DIFFMINE_CELERY_BROKER", "redis://r:6379/0")
    assert get_validated_config(str(DEPLOY / "cluster" / "celery.yaml"))["broker"] == "redis://r:6379/0"


def test_the_kubernetes_instance_and_executor_validate(monkeypatch):
    from dagster_k8s import K8sRunLauncher, k8s_job_executor

    cfg = _instance("kubernetes", monkeypatch)
    launcher = _valid(K8sRunLauncher.config_type(), cfg["run_launcher"]["config"])
    assert launcher["job_namespace"] == "diffmine"
    monkeypatch.setenv("DIFFMINE_DEPLOYMENT", "kubernetes")
    from diffmine_assets.deployment import executor_for

    executor = executor_for("kubernetes")
    assert executor.name == "k8s_steps"
    # the executor's configured values, against its schema
    _valid(k8s_job_executor.config_schema.config_type, {"env_vars": ["DIFFMINE_LAKE_URL", "DIFFMINE_DEPLOYMENT", "AWS_ENDPOINT_URL"], "max_concurrent": 8})


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _snake_keys(value):
    if isinstance(value, dict):
        return {_snake(k): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def test_the_helm_values_render_to_valid_dagster_config(monkeypatch):
    """The chart's values.schema.json is not available offline; the sections
    the chart turns into Dagster config are checked against Dagster's schemas
    the way the chart renders them (camelCase keys to snake_case)."""
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher

    values = yaml.safe_load((DEPLOY / "kubernetes" / "values.yaml").read_text())
    k8s = _snake_keys(values["runLauncher"]["config"]["k8sRunLauncher"])
    # the chart passes config maps and secrets by name
    k8s["env_config_maps"] = [m["name"] for m in k8s.pop("env_config_maps")]
    k8s["env_secrets"] = [s["name"] for s in k8s.pop("env_secrets")]
    # what the chart adds from its own templates
    k8s.update(instance_config_map="diffmine-dagster-instance", job_namespace="diffmine", dagster_home="/opt/dagster/dagster_home",
               postgres_password_secret="diffmine-postgres-url")
    _valid(K8sRunLauncher.config_type(), k8s)
    _valid(S3ComputeLogManager.config_type(), _snake_keys(values["computeLogManager"]["config"]["s3ComputeLogManager"]))
    assert values["runLauncher"]["type"] == "K8sRunLauncher" and values["computeLogManager"]["type"] == "S3ComputeLogManager"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "diffmine_assets.definitions"]
    assert {"name": "DIFFMINE_DEPLOYMENT", "value": "kubernetes"} in deployment["env"]
    coord = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert {"key": "dagster/backfill", "limit": 12} in coord["tagConcurrencyLimits"] and coord["maxConcurrentRuns"] == 16
    # no literal secret anywhere in the values
    text = (DEPLOY / "kubernetes" / "values.yaml").read_text().lower()
    assert "aws_secret_access_key:" not in text and "password: \"\"" not in text.replace("postgresqlpassword: \"\"", "")


def test_definitions_load_per_deployment(monkeypatch, tmp_path):
    """One environment variable picks resources and executor; the assets are the same."""
    from diffmine_assets.definitions import build_definitions

    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    keys = {}
    # on one machine and on Celery a run has a process of its own and runs its steps in it
    for name, executor in (("local", "in_process"), ("cluster", "in_process"), ("kubernetes", "k8s_steps")):
        monkeypatch.setenv("DIFFMINE_DEPLOYMENT", name)
        defs = build_definitions(REPO / "diffmine.yaml")
        job = defs.resolve_job_def("builtin__label_assets")
        assert job.executor_def.name == executor, (name, job.executor_def.name)
        assert job.tags["dagster-celery/queue"] == "gpu"
        keys[name] = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    assert defs.resolve_job_def("builtin__baseline_assets").tags["dagster-celery/queue"] == "cpu"
    assert keys["local"] == keys["cluster"] == keys["kubernetes"]
