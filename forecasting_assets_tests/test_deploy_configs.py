"""The deployment configurations in deploy/ (see deploy/README.md): they load, and what can run here runs.

- PostgreSQL: deploy/postgres/dagster.yaml validates against Dagster's instance schema, keeps the project's
  dagster.yaml settings and resolves to dagster-postgres's storage; where PostgreSQL's server programs are
  installed, a throwaway server on 127.0.0.1 (data folder under the test's tmp folder) stores a run of the
  code location's own job, read back by a second instance.
- Celery: deploy/celery/run_config.yaml validates against the code location's jobs with FORECASTING_EXECUTOR=celery
  and parses as dagster-celery's worker config; with the PostgreSQL server, a real worker
  (`dagster-celery worker start -A dagster_celery.app`) runs two steps of full_pipeline_job launched with
  `dagster job execute -m forecasting_assets.definitions`, through kombu's filesystem broker (no Redis or
  RabbitMQ here: the broker is the only part swapped).
- Kubernetes: deploy/k8s/run_config.yaml validates against the jobs with FORECASTING_EXECUTOR=k8s, its pod settings
  parse as Kubernetes models, the Helm values name the code location and agree with the project's instance
  settings, and the Dockerfile installs requirements.lock. Nothing is built or deployed (no Docker daemon,
  Helm or cluster here).
- No file in deploy/ holds a secret or a non-loopback host (the rules of test_security.py).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from forecasting_assets.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
PG_DIR = DEPLOY / "postgres"
PG_YAML = PG_DIR / "dagster.yaml"
CELERY_RUN_CONFIG = DEPLOY / "celery" / "run_config.yaml"
K8S_RUN_CONFIG = DEPLOY / "k8s" / "run_config.yaml"
HELM_VALUES = DEPLOY / "k8s" / "values.yaml"
DOCKERFILE = DEPLOY / "k8s" / "Dockerfile"
README = DEPLOY / "README.md"

PG_ENV = ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_PORT")
CELERY_ENV = ("DAGSTER_CELERY_BROKER_URL", "DAGSTER_CELERY_BACKEND_URL")
SELECTION = (
    "forecasting_assets/definitions.py must choose the executor from FORECASTING_EXECUTOR=celery "
    "(dagster_celery.celery_executor) and =k8s (dagster_k8s.k8s_job_executor); see deploy/README.md"
)
# the steps the real Celery worker runs: the raw_sales multi-asset (raw_sales, source_spec, sales_calendar), then
# validated_sales (with sales_quarantine), which reads raw_sales's outputs back through the project's IO manager
CELERY_STEPS = ("raw_sales", "validated_sales")
ALL_INTERFACES = ".".join("0" * 4)  # spelled so that this file does not mention it (test_security.py)


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _jobs(monkeypatch, executor: str) -> dict[str, dg.JobDefinition]:
    """The code location's jobs as they resolve with FORECASTING_EXECUTOR=executor."""
    from forecasting_assets.definitions import build_definitions

    monkeypatch.setenv("FORECASTING_EXECUTOR", executor)
    defs = build_definitions()
    return {job.name: defs.resolve_job_def(job.name) for job in defs.jobs}


def _pg_env(monkeypatch, server: dict, db: str) -> None:
    for name, value in zip(PG_ENV, (server["user"], server["password"], server["host"], db, str(server["port"]))):
        monkeypatch.setenv(name, value)


# --------------------------------------------------------------------------------------------------
# The executor follows FORECASTING_EXECUTOR
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("choice", "executor"), [("celery", "celery"), ("k8s", "k8s"), ("in_process", "in_process"), ("", "multiprocess")])
def test_forecasting_executor_chooses_the_executor_of_the_jobs_without_their_own(monkeypatch, choice, executor):
    jobs = _jobs(monkeypatch, choice)
    assert jobs["full_pipeline_job"].executor_def.name == executor, SELECTION
    # the short chains keep their in-process executor whatever the choice (automation/jobs.py)
    assert {job.executor_def.name for job in jobs.values()} <= {executor, "in_process"}


# --------------------------------------------------------------------------------------------------
# PostgreSQL instance storage
# --------------------------------------------------------------------------------------------------


def test_the_postgres_instance_config_keeps_the_projects_settings_and_resolves_to_dagster_postgres(monkeypatch, tmp_path):
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.instance.ref import InstanceRef
    from dagster_postgres import DagsterPostgresStorage
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy.engine import make_url

    project, deploy = _yaml(REPO_ROOT / "dagster.yaml"), _yaml(PG_YAML)
    assert {key: value for key, value in deploy.items() if key != "storage"} == project, "deploy/postgres/dagster.yaml drifted from dagster.yaml"
    assert deploy["telemetry"] == {"enabled": False}  # no ~/.dagster/.telemetry

    config, custom_class = dagster_instance_config(str(PG_DIR))  # Dagster's own schema check of the whole file
    assert custom_class is None and list(config["storage"]) == ["postgres"]
    ref = InstanceRef.from_dir(str(tmp_path / "home"), config_dir=str(PG_DIR))
    assert (ref.storage_data.module_name, ref.storage_data.class_name) == ("dagster_postgres", "DagsterPostgresStorage")
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    storage_config = yaml.safe_load(ref.storage_data.config_yaml)

    # every connection setting is an environment variable; none set -> refused, naming the variable
    for name in PG_ENV:
        monkeypatch.delenv(name, raising=False)
    refused = process_config(resolve_to_config_type(DagsterPostgresStorage.config_type()), storage_config)
    assert not refused.success and "DAGSTER_PG_" in refused.errors[0].message

    password = secrets.token_urlsafe(12)
    _pg_env(monkeypatch, {"user": "dagster", "password": password, "host": "127.0.0.1", "port": 5433}, "forecasting")
    resolved = process_config(resolve_to_config_type(DagsterPostgresStorage.config_type()), storage_config)
    assert resolved.success, resolved.errors
    url = make_url(pg_url_from_config(resolved.value))
    assert (url.username, url.password, url.host, url.port, url.database) == ("dagster", password, "127.0.0.1", 5433, "forecasting")
    # the driver dagster-postgres installs (a bare postgresql:// would mean psycopg 3 to SQLAlchemy 2.1)
    assert url.get_dialect().driver == "psycopg2"
    __import__("psycopg2")


def _postgres_programs() -> tuple[Path, Path] | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder / "initdb", folder / "pg_ctl"
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return (Path(initdb), Path(pg_ctl)) if initdb and pg_ctl else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    """A throwaway PostgreSQL server on 127.0.0.1, its data folder under the tests' tmp folder, a random password
    (scram-sha-256), stopped at the end. PostgreSQL refuses to run as root: as root, its programs run as the
    `postgres` (else `nobody`) user, and the tmp folders are made traversable (not readable) for it."""
    programs = _postgres_programs()
    if programs is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not installed (Debian: the postgresql package)")
    initdb, pg_ctl = programs
    root = tmp_path_factory.mktemp("postgres")
    user = None
    if os.geteuid() == 0:
        import pwd

        names = [name for name in ("postgres", "nobody") if name in {p.pw_name for p in pwd.getpwall()}]
        if not names:
            pytest.skip("running as root, and no unprivileged user (postgres, nobody) to run PostgreSQL as")
        user = names[0]
        entry = pwd.getpwnam(user)
        for folder in [root, *root.parents]:
            if folder == REPO_ROOT or folder == Path("/"):
                break
            folder.chmod(folder.stat().st_mode | 0o011)  # traverse only
        os.chown(root, entry.pw_uid, entry.pw_gid)
    password = secrets.token_urlsafe(16)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if user is not None:
        os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
    data, log, port = root / "data", root / "server.log", _free_port()
    env = {**os.environ, "HOME": str(root), "TMPDIR": str(root), "LC_ALL": "C"}
    run = dict(user=user, env=env, cwd=root, capture_output=True, text=True, timeout=60)
    init = subprocess.run([str(initdb), "-D", str(data), "-U", "dagster", f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"], **run)
    if init.returncode != 0:
        pytest.fail(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off -c full_page_writes=off"
    start = subprocess.run([str(pg_ctl), "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start"], **run)
    if start.returncode != 0:
        pytest.fail(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{log.read_text() if log.exists() else ''}")
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "dagster", "password": password}
    finally:
        subprocess.run([str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"], **run)


def _create_database(server: dict, name: str) -> None:
    import psycopg2

    con = psycopg2.connect(host=server["host"], port=server["port"], user=server["user"], password=server["password"], dbname="postgres")
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()


def _pg_rows(server: dict, db: str, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg2

    con = psycopg2.connect(host=server["host"], port=server["port"], user=server["user"], password=server["password"], dbname=db)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory) -> Path:
    from forecasting_assets.demo_data import write_demo

    source = tmp_path_factory.mktemp("deploy_demo") / "demo"
    write_demo(source, shape="tiny", seed=7)
    return source


def _dagster_home(tmp_path: Path) -> Path:
    """A DAGSTER_HOME holding deploy/postgres/dagster.yaml, as deploy/README.md sets one up."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PG_YAML, home / "dagster.yaml")
    return home


def test_the_postgres_instance_stores_a_run_of_the_code_location(postgres_server, demo_source, monkeypatch, tmp_path):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import DagsterPostgresStorage

    from forecasting_assets.definitions import build_definitions

    _create_database(postgres_server, "instance_test")
    _pg_env(monkeypatch, postgres_server, "instance_test")
    monkeypatch.setenv("FORECASTING_SOURCE", str(demo_source))
    home = _dagster_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    with dg.DagsterInstance.get() as instance:
        assert instance.get_ref().storage_data.class_name == DagsterPostgresStorage.__name__
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator) and instance.run_monitoring_enabled
        assert not instance.telemetry_enabled
        job = build_definitions().resolve_job_def("full_pipeline_job")
        selection = [dg.AssetKey(key) for key in ("raw_sales", "source_spec", "sales_calendar")]
        result = job.execute_in_process(instance=instance, asset_selection=selection)
        assert result.success
        run_id = result.run_id

    # the run and its events are rows in PostgreSQL, and a second instance from the same file reads them back
    assert _pg_rows(postgres_server, "instance_test", "SELECT run_id, status FROM runs") == [(run_id, "SUCCESS")]
    assert _pg_rows(postgres_server, "instance_test", "SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))[0][0] > 10
    with dg.DagsterInstance.from_config(str(home)) as again:
        assert again.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        assert again.get_latest_materialization_event(dg.AssetKey("sales_calendar")).run_id == run_id
    assert not (home / "history").exists()  # nothing fell back to SQLite files in DAGSTER_HOME


# --------------------------------------------------------------------------------------------------
# Celery executor
# --------------------------------------------------------------------------------------------------


def test_the_celery_run_config_validates_against_the_code_locations_jobs(monkeypatch):
    from dagster_celery.cli import get_validated_config

    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("DAGSTER_CELERY_BACKEND_URL", "redis://127.0.0.1:6379/1")
    jobs = _jobs(monkeypatch, "celery")
    celery = {name for name, job in jobs.items() if job.executor_def.name == "celery"}
    assert "full_pipeline_job" in celery, SELECTION
    run_config = _yaml(CELERY_RUN_CONFIG)
    for name in celery:
        dg.validate_run_config(jobs[name], run_config)
        dg.validate_run_config(jobs[name], {})  # schedules and sensors launch with no run config: dagster-celery's defaults
    for name in set(jobs) - celery:  # the in-process jobs refuse it, as the file says
        assert jobs[name].executor_def.name == "in_process"
        with pytest.raises(dg.DagsterInvalidConfigError):
            dg.validate_run_config(jobs[name], run_config)
    # the workers read the same file with dagster-celery's own parser
    assert get_validated_config(str(CELERY_RUN_CONFIG)) == {
        "broker": "redis://127.0.0.1:6379/0",
        "backend": "redis://127.0.0.1:6379/1",
        "retries": {"enabled": {}},
    }
    monkeypatch.delenv("DAGSTER_CELERY_BROKER_URL")
    with pytest.raises(dg.DagsterInvalidConfigError, match="DAGSTER_CELERY_BROKER_URL"):
        dg.validate_run_config(jobs["full_pipeline_job"], run_config)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group started for ``process`` (the dagster-celery CLI and the celery worker it
    starts), SIGKILL if it has not exited after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    else:
        try:  # the CLI may have exited before the worker it started
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def test_a_celery_worker_runs_the_steps_of_the_code_locations_job(postgres_server, demo_source, monkeypatch, tmp_path):
    """`dagster-celery worker start -A dagster_celery.app -y deploy/celery/run_config.yaml` and `dagster job execute
    -m forecasting_assets.definitions -j full_pipeline_job -c deploy/celery/run_config.yaml`, as deploy/README.md
    says, both on deploy/postgres/dagster.yaml; the broker is kombu's filesystem transport (one extra config file
    for its folders) and the result backend Celery's file backend, instead of Redis/RabbitMQ."""
    assert _jobs(monkeypatch, "celery")["full_pipeline_job"].executor_def.name == "celery", SELECTION
    _create_database(postgres_server, "celery_test")
    _pg_env(monkeypatch, postgres_server, "celery_test")
    home = _dagster_home(tmp_path)
    dg.DagsterInstance.from_config(str(home)).dispose()  # the tables, created once before two processes start (README)
    bus = tmp_path / "broker"
    for folder in ("queue", "processed", "results", "control"):
        (bus / folder).mkdir(parents=True)
    transport = tmp_path / "filesystem_broker.yaml"
    options = {
        "data_folder_in": str(bus / "queue"),
        "data_folder_out": str(bus / "queue"),
        "processed_folder": str(bus / "processed"),
        "control_folder": str(bus / "control"),  # kombu's default is ./control
        "polling_interval": 0.2,
    }
    transport.write_text(yaml.safe_dump({"execution": {"config": {"config_source": {"broker_transport_options": options}}}}))
    worker_config = tmp_path / "worker.yaml"  # a worker takes one -y file: the deploy file plus the transport folders
    merged = _yaml(CELERY_RUN_CONFIG)
    merged["execution"]["config"].update(_yaml(transport)["execution"]["config"])
    worker_config.write_text(yaml.safe_dump(merged))
    project_home = tmp_path / "project"
    (project_home / "data").mkdir(parents=True)
    for folder in ("home", "tmp", "work"):
        (tmp_path / folder).mkdir()
    venv_bin = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),  # nothing lands in the real $HOME or /tmp
        "TMPDIR": str(tmp_path / "tmp"),
        "DAGSTER_HOME": str(home),
        "DAGSTER_CELERY_BROKER_URL": "filesystem://",
        "DAGSTER_CELERY_BACKEND_URL": f"file://{bus / 'results'}",
        "FORECASTING_EXECUTOR": "celery",
        "FORECASTING_ASSETS_HOME": str(project_home),  # the worker and the run share the project's files
        "FORECASTING_SOURCE": str(demo_source),
    }
    worker_log = tmp_path / "worker.log"
    with worker_log.open("w") as log:
        worker = subprocess.Popen(
            [str(venv_bin / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(worker_config), "-n", "deploytest", "--", "--pool=solo"],
            cwd=tmp_path / "work", env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        run = subprocess.run(
            [str(venv_bin / "dagster"), "job", "execute", "-m", "forecasting_assets.definitions", "-j", "full_pipeline_job",
             "-c", str(CELERY_RUN_CONFIG), "-c", str(transport), "-o", ",".join(CELERY_STEPS)],
            cwd=tmp_path / "work", env=env, capture_output=True, text=True, timeout=240,
        )
    finally:
        _stop(worker)
    worker_output = worker_log.read_text()
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}\nworker:\n{worker_output[-3000:]}"

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_runs()
        assert record.status == dg.DagsterRunStatus.SUCCESS
        assert record.run_config["execution"]["config"]["broker"] == {"env": "DAGSTER_CELERY_BROKER_URL"}  # not its value
        ran_on_worker = {}
        for entry in instance.all_logs(record.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            if "in celery worker" in (entry.message or ""):
                metadata = entry.dagster_event.engine_event_data.metadata
                ran_on_worker[entry.step_key] = metadata["Celery worker"].value
        assert ran_on_worker == {step: f"deploytest@{socket.gethostname()}" for step in CELERY_STEPS}, SELECTION
        succeeded = {e.step_key for e in instance.all_logs(record.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
        assert succeeded == set(CELERY_STEPS)
    outputs = project_home / "data" / "outputs"
    assert {"raw_sales.parquet", "sales_calendar.parquet", "source_spec.json", "validated_sales.parquet"} <= {p.name for p in outputs.iterdir()}
    assert re.search(r"Task execute_plan\[[0-9a-f-]+\] succeeded", worker_output), worker_output[-3000:]


# --------------------------------------------------------------------------------------------------
# Kubernetes: k8s_job_executor run config, Helm values, Dockerfile
# --------------------------------------------------------------------------------------------------


def test_the_k8s_run_config_validates_against_the_code_locations_jobs(monkeypatch):
    import kubernetes.client
    from dagster_k8s.models import k8s_model_from_dict

    jobs = _jobs(monkeypatch, "k8s")
    k8s = {name for name, job in jobs.items() if job.executor_def.name == "k8s"}
    assert "full_pipeline_job" in k8s, SELECTION
    run_config = _yaml(K8S_RUN_CONFIG)
    for name in k8s:
        dg.validate_run_config(jobs[name], run_config)
        dg.validate_run_config(jobs[name], {})  # all of it is optional
    for name in set(jobs) - k8s:
        with pytest.raises(dg.DagsterInvalidConfigError):
            dg.validate_run_config(jobs[name], run_config)
    execution = run_config["execution"]["config"]
    # per-step settings name real steps, and every container setting is a valid Kubernetes container field
    assert set(execution["per_step_k8s_config"]) <= set(jobs["full_pipeline_job"].graph.node_dict)
    for step_config in [execution["step_k8s_config"], *execution["per_step_k8s_config"].values()]:
        container = k8s_model_from_dict(kubernetes.client.V1Container, {"name": "step", **step_config["container_config"]})
        assert container.resources.requests["memory"]


def test_the_helm_values_run_the_code_location_with_the_projects_instance_settings(monkeypatch):
    import kubernetes.client
    from dagster_k8s.models import k8s_model_from_dict, k8s_snake_case_dict

    from forecasting_assets.paths import data_dir

    def model(cls, value: dict):
        return k8s_model_from_dict(cls, k8s_snake_case_dict(cls, value))  # Helm values are camelCase

    values = _yaml(HELM_VALUES)
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert deployment["codeServerArgs"] == ["-m", "forecasting_assets.definitions"]
    assert (deployment["image"]["repository"], deployment["image"]["tag"]) == ("FORECASTING_IMAGE_REPOSITORY", "FORECASTING_IMAGE_TAG")
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["FORECASTING_EXECUTOR"] == "k8s"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True  # runs and step pods get the env and volume
    assert values["runLauncher"]["type"] == "K8sRunLauncher"

    # the shared volume is mounted where the project keeps its data, given the image's FORECASTING_ASSETS_HOME
    monkeypatch.setenv("FORECASTING_ASSETS_HOME", env["FORECASTING_ASSETS_HOME"])
    (mount,) = [model(kubernetes.client.V1VolumeMount, m) for m in deployment["volumeMounts"]]
    (volume,) = [model(kubernetes.client.V1Volume, v) for v in deployment["volumes"]]
    assert Path(mount.mount_path) == data_dir() and mount.name == volume.name
    assert volume.persistent_volume_claim.claim_name
    dockerfile_env = dict(re.findall(r"(\w+)=(\S+)", " ".join(_instructions("ENV"))))
    assert dockerfile_env["FORECASTING_ASSETS_HOME"] == env["FORECASTING_ASSETS_HOME"]

    # PostgreSQL: external, password from a Secret, the driver named as in deploy/postgres/dagster.yaml
    postgres = values["postgresql"]
    assert postgres["enabled"] is False and postgres["postgresqlHost"] == "" and "postgresqlPassword" not in postgres
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]
    assert postgres["postgresqlScheme"] == _yaml(PG_YAML)["storage"]["postgres"]["postgres_db"]["scheme"]

    # the instance settings the chart writes into its dagster.yaml agree with the project's
    project = _yaml(REPO_ROOT / "dagster.yaml")
    assert values["telemetry"] == project["telemetry"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == project["run_coordinator"]["class"] and coordinator["enabled"]
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] == project["run_coordinator"]["config"]["max_concurrent_runs"]
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] == project["run_monitoring"]["enabled"]
    assert values["additionalInstanceConfig"]["freshness"] == project["freshness"]


def _instructions(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction of deploy/k8s/Dockerfile (continuation lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [keyword]]


def test_the_dockerfile_installs_the_lock_file_and_the_package():
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    makefile = (REPO_ROOT / "Makefile").read_text()
    (base,) = _instructions("FROM")
    assert re.match(r"python:3\.11[.-]", base), base  # requires-python
    assert pyproject["project"]["requires-python"].startswith(">=3.11")
    runs = _instructions("RUN")
    uv_version = re.search(r"^UV_VERSION := (\S+)", makefile, re.MULTILINE).group(1)
    assert any(f"uv=={uv_version}" in run for run in runs), "the Makefile's uv version"
    sync = [run for run in runs if "uv pip sync" in run]
    assert sync and "requirements.lock" in sync[0]
    assert any("--no-deps -e ." in run for run in runs)
    copies = " ".join(_instructions("COPY"))
    for needed in ("requirements.lock", "pyproject.toml", "README.md", "forecasting_assets"):
        assert needed in copies
    cmd = _instructions("CMD")[0]
    assert "forecasting_assets.definitions" in cmd and "code-server" in cmd
    ignored = (DEPLOY / "k8s" / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "data", ".git"} <= set(ignored)


# --------------------------------------------------------------------------------------------------
# The README, and the security rules
# --------------------------------------------------------------------------------------------------


def test_the_readme_gives_the_commands_the_tests_use():
    text = README.read_text()
    for command in (
        "make dev DAGSTER_YAML=deploy/postgres/dagster.yaml DAGSTER_HOME=",
        "dagster-celery worker start -A dagster_celery.app -y deploy/celery/run_config.yaml",
        "-c deploy/celery/run_config.yaml",
        "FORECASTING_EXECUTOR=celery",
        "FORECASTING_EXECUTOR=k8s",
        "docker build -f deploy/k8s/Dockerfile",
        "-f deploy/k8s/values.yaml",
        "--version 1.13.27",
    ):
        assert command in text, command
    assert f"dagster=={dg.__version__}" in (REPO_ROOT / "requirements.lock").read_text() and dg.__version__ == "1.13.27"


def test_no_deploy_file_holds_a_secret_or_a_non_loopback_host():
    from forecasting_assets_tests.test_security import LOOPBACK, find_secrets

    files = sorted(p for p in DEPLOY.rglob("*") if p.is_file())
    assert {PG_YAML, CELERY_RUN_CONFIG, K8S_RUN_CONFIG, HELM_VALUES, DOCKERFILE, README} <= set(files)
    # a database or broker URL written out names a loopback host (examples for one machine), never a server
    # (or an environment variable)
    service_url = re.compile(r"\b(?:postgres(?:ql)?(?:\+\w+)?|redis|rediss|amqp|pyamqp)://(?:[^/@\s`]+@)?(\[[0-9a-f:]+\]|[\w$][^/:\s`]*)")
    problems = []
    for path in files:
        text, name = path.read_text(), path.relative_to(REPO_ROOT)
        problems += [f"{name}:{n}: {kind}: {line}" for n, kind, line in find_secrets(text, path.suffix)]
        if ALL_INTERFACES in text:
            problems.append(f"{name}: mentions {ALL_INTERFACES}")
        problems += [f"{name}: a service URL on {host}" for host in service_url.findall(text) if host.strip("[]") not in LOOPBACK and not host.startswith("$")]
    assert not problems, "\n".join(problems)
