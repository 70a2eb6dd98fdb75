"""Security: servers bind to loopback, no secret in the repository, landing names cannot escape the folder,
warehouse queries are parameterized, models load only from the project's own MLflow store, and
``make audit`` reports the known vulnerabilities of the locked dependencies.

Nothing here needs the network except ``test_pip_audit_finds_a_known_vulnerability_on_pypi``, which skips
(saying why) where PyPI's per-version JSON API is not reachable; the ``make audit`` machinery itself is
tested against a fake OSV service on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml

from forecasting_assets.paths import REPO_ROOT

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _make(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``make ARGS`` in the repository, with no HOST or outer make's flags inherited from the environment."""
    env = {k: v for k, v in os.environ.items() if k not in {"HOST", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _repo_files() -> list[Path]:
    """Every file git tracks, plus new files not ignored (they are about to be committed)."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [REPO_ROOT / name for name in sorted(set(out.split("\0"))) if name and (REPO_ROOT / name).is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    return None if b"\0" in data[:8192] else data.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------------
# Servers bind to 127.0.0.1 unless configured otherwise
# --------------------------------------------------------------------------------------------------


def _server_line(output: str, program: str) -> str:
    """The one command of ``make -n`` output that runs ``program`` (continuation lines joined)."""
    lines = [line for line in output.replace("\\\n", " ").splitlines() if program in line]
    assert len(lines) == 1, f"expected one {program!r} command in:\n{output}"
    return lines[0]


@needs_make
def test_make_dev_and_mlflow_bind_to_loopback_by_default():
    dev = _make("-n", "dev")
    assert dev.returncode == 0, dev.stderr
    assert re.search(r"\s-h 127\.0\.0\.1\s", _server_line(dev.stdout, "dagster dev") + " ")
    mlflow = _make("-n", "mlflow")
    assert mlflow.returncode == 0, mlflow.stderr
    assert re.search(r"\s--host 127\.0\.0\.1\s", _server_line(mlflow.stdout, "mlflow ui") + " ")


@needs_make
def test_the_host_is_set_on_the_command_line_only():
    for target, program, flag in (("dev", "dagster dev", "-h"), ("mlflow", "mlflow ui", "--host")):
        chosen = _make("-n", target, "HOST=192.0.2.10")
        assert f"{flag} 192.0.2.10 " in _server_line(chosen.stdout, program) + " "
    # a HOST exported in the environment (some dev containers set HOST=0.0.0.0) is ignored
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}} | {"HOST": "0.0.0.0"}
    exported = subprocess.run([MAKE, "--no-print-directory", "-n", "dev"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "-h 127.0.0.1 " in _server_line(exported.stdout, "dagster dev") + " "


def test_every_server_command_in_the_makefile_names_its_host():
    """A new server target must bind to $(HOST) too: `dagster dev` and `mlflow ui/server` default to
    127.0.0.1 today, but the Makefile says so explicitly rather than rely on a tool's default."""
    servers = re.compile(r"\b(dagster dev|dagster-webserver|dagster-daemon run|mlflow (?:ui|server)|jupyter (?:lab|notebook)|uvicorn|http\.server)\b")
    for line in (REPO_ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and servers.search(line) and "daemon run" not in line:
            assert re.search(r"(-h|--host)[ =]\$\(HOST\)", line), f"server command without -h/--host $(HOST): {line.strip()}"


def test_workspace_yaml_loads_the_code_location_in_process_or_on_loopback():
    workspace = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    for entry in workspace["load_from"]:
        server = entry.get("grpc_server")
        if server is not None:
            assert server.get("host", "localhost") in LOOPBACK, f"workspace.yaml: code server on {server.get('host')}"


def test_servers_in_the_code_and_tests_bind_to_loopback():
    """Literal hosts given to servers in Python (HTTPServer, socket.bind, -h/--host arguments) are loopback,
    and no file binds to all interfaces (0.0.0.0) except as an explicit ``HOST=0.0.0.0`` override example."""
    binds = [
        re.compile(r"(?:HTTPServer|TCPServer|UDPServer|\.bind)\(\(\s*[\"']([^\"']*)[\"']"),
        re.compile(r"[\"'](?:-h|--host)[\"']\s*,\s*[\"']([^\"']*)[\"']"),
        re.compile(r"\bhost\s*=\s*[\"']([^\"']*)[\"']"),
    ]
    server_command = re.compile(r"\b(?:dagster dev|dg dev|dagster-webserver|dagster api grpc|mlflow (?:ui|server)|uvicorn|jupyter|http\.server)\b")
    shell_host = re.compile(r"(?:\s-h|--host)[ =]([^\s`'\"]+)")
    problems = []
    for path in _repo_files():
        if path.suffix not in {".py", ".ipynb", ".yaml", ".yml", ".md", ".toml", ""} and path.name != "Makefile":
            continue
        text = _text(path)
        if text is None or path.name == Path(__file__).name:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            hosts = [host for pattern in binds for host in pattern.findall(line)]
            if server_command.search(line):  # a server started from the shell (README, Makefile, CI)
                hosts += [host for host in shell_host.findall(line) if host != "$(HOST)"]
            problems += [f"{path.relative_to(REPO_ROOT)}:{number}: binds to {host!r}" for host in hosts if host not in LOOPBACK]
            if "0.0.0.0" in line and "HOST=0.0.0.0" not in line:
                problems.append(f"{path.relative_to(REPO_ROOT)}:{number}: mentions 0.0.0.0")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# No secret in the repository
# --------------------------------------------------------------------------------------------------

_KEY = r"(?:[a-z0-9]+[_-])*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|webhook[_-]?url)"
_NOT_A_VALUE = re.compile(r"^(?:\$|<|\{|%\(|os\.|env|getenv|none$|null$|true$|false$|\.\.\.)", re.IGNORECASE)
SECRET_PATTERNS = {
    "Slack webhook URL": re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{16,}"),
    "Discord webhook URL": re.compile(r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]{16,}"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    "private key block": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,})"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "URL with user:password": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"<>]+:(?P<value>[^\s/@'\"<>]+)@[^\s/'\"<>]+"),
    "credential in a URL query": re.compile(r"[?&](?:token|key|api_key|password|secret|sig|signature)=(?P<value>[^&\s\"'<>]{8,})", re.IGNORECASE),
    "credential with a quoted literal value": re.compile(rf"\b{_KEY}\b[\"']?\s*[:=]\s*([\"'])(?P<value>[^\"'\s]{{4,}})\1", re.IGNORECASE),
    "credential with a literal value": re.compile(rf"(?:^|[\s;&?,{{(]){_KEY}\s*[:=]\s*(?P<value>[^\s\"',;)}}\]#]{{4,}})", re.IGNORECASE),
}
_CODE_SUFFIXES = {".py", ".ipynb"}  # where `token=token` is a variable, not a literal


def find_secrets(text: str, suffix: str = "") -> list[tuple[int, str, str]]:
    """(line number, kind, line) for every line that looks like it holds a secret (the first kind found)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        kind = next((kind for kind, pattern in SECRET_PATTERNS.items() if _holds(pattern, line, kind, suffix)), None)
        if kind is not None:
            found.append((number, kind, line.strip()[:160]))
    return found


def _holds(pattern: re.Pattern, line: str, kind: str, suffix: str) -> bool:
    if kind == "credential with a literal value" and suffix in _CODE_SUFFIXES:
        return False
    for match in pattern.finditer(line):
        value = match.groupdict().get("value")
        if value is None or not _NOT_A_VALUE.match(value):
            return True
    return False


def test_the_secret_scanner_catches_each_kind_and_lets_references_through():
    # built from parts, so that this file holds none of them
    leaks = [
        ("Slack webhook URL", "url = 'https://hooks.slack.com/services/" + "T0123ABCD/B0123ABCD/abcdefghijklmnopqrstuvwx'"),
        ("Discord webhook URL", "https://discord.com/api/webhooks/" + "123456789012345678/abcdefghijklmnopqrstuvwxyzABCDEF"),
        ("AWS access key id", "aws_key_id: AKIA" + "ABCDEFGHIJKLMNOP"),
        ("private key block", "-----BEGIN " + "RSA PRIVATE KEY-----"),
        ("GitHub token", "ghp_" + "a" * 36),
        ("URL with user:password", "DATABASE=postgresql://admin:" + "s3cr3t@db.example.com/sales"),
        ("credential in a URL query", "https://example.com/hook?token=" + "abcdef123456"),
        ("credential with a quoted literal value", 'password = "' + 'hunter22"'),
        ("credential with a literal value", "FORECASTING_API_TOKEN=" + "abcd1234efgh"),
    ]
    for kind, line in leaks:
        assert [k for _, k, _ in find_secrets(line)] == [kind], line
    assert find_secrets("webhook_url = 'https://hooks.slack.com/services/" + "T0/B0/xyz'\n", ".py")[0][0] == 1
    references = [
        "url = os.environ.get(WEBHOOK_ENV)",
        "token = token",  # a variable (code)
        'FORECASTING_WEBHOOK_URL="$FORECASTING_WEBHOOK_URL"',
        "password: ${DB_PASSWORD}",
        "export FORECASTING_WEBHOOK_URL=<your webhook>",
        "sqlite:///data/mlflow.db and http://127.0.0.1:3000/runs",
        "max_tokens=100",
    ]
    for line in references:
        assert find_secrets(line, ".py" if line.startswith("token") else "") == [], line


def test_no_secret_in_any_repository_file():
    """Webhook URLs and credentials come from the environment (FORECASTING_WEBHOOK_URL), never the repo."""
    found = []
    for path in _repo_files():
        text = _text(path)
        if text is None:
            continue
        found += [f"{path.relative_to(REPO_ROOT)}:{number}: {kind}: {line}" for number, kind, line in find_secrets(text, path.suffix)]
    assert not found, "possible secrets in the repository:\n" + "\n".join(found)


def test_the_webhook_url_comes_from_the_environment(monkeypatch):
    from forecasting_assets.automation import alerts

    monkeypatch.delenv(alerts.WEBHOOK_ENV, raising=False)
    assert alerts.webhook_url() is None and alerts.send_alert("test", "no url") == "off"
    monkeypatch.setenv(alerts.WEBHOOK_ENV, " http://127.0.0.1:9/hook ")
    assert alerts.webhook_url() == "http://127.0.0.1:9/hook"


# --------------------------------------------------------------------------------------------------
# Landing file names cannot escape the landing folder
# --------------------------------------------------------------------------------------------------


def test_landing_names_that_look_like_traversal_stay_inside_the_folder(tmp_path):
    """File names come from listing the folder (so they hold no '/'); a name made of dots, backslashes and
    %2F is archived inside ``archive/`` like any other, and a symlinked folder named like a sales file is
    refused (the link removed, its target untouched)."""
    from forecasting_assets.ingest.landing import ARCHIVE, REJECTED, scan_landing
    from forecasting_assets.ingest.sources import load_source_spec

    source = tmp_path / "source"
    source.mkdir()
    rows = ["date,store_id,dept_id,sales"] + [f"2016-05-{d:02d},CA_1,FOODS_1,{d}" for d in range(1, 23)]
    (source / "sales.csv").write_text("\n".join(rows) + "\n")
    landing = tmp_path / "box" / "landing"
    landing.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.csv").write_text("date,store_id,dept_id,sales\n2016-05-23,CA_1,FOODS_1,9\n")
    tricky = "sales..\\..\\outside\\..%2F..%2Fescape.csv"
    (landing / tricky).write_text("date,store_id,dept_id,sales\n2016-05-23,CA_1,FOODS_1,3\n")
    hidden = "..\\..\\outside\\hidden.csv"  # starts with '.': a hidden name, left alone
    (landing / hidden).write_text("date,store_id,dept_id,sales\n2016-05-24,CA_1,FOODS_1,4\n")
    (landing / "folder.csv").symlink_to(outside, target_is_directory=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if landing not in p.parents and p != landing)

    scan = scan_landing(landing, load_source_spec(source), settle_seconds=0)

    assert [b.original_name for b in scan.accepted] == [tricky]
    archived = landing / ARCHIVE / scan.accepted[0].archived_name
    assert archived.is_file() and archived.resolve().parent == (landing / ARCHIVE).resolve()
    assert [name for name, _ in scan.rejected] == ["folder.csv"] and "symbolic link" in scan.rejected[0][1]
    assert not (landing / "folder.csv").exists() and (landing / REJECTED / "folder.csv.reason.txt").exists()
    assert (landing / hidden).is_file() and (outside / "keep.csv").is_file()
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if landing not in p.parents and p != landing)
    assert after == before  # nothing written, moved or removed outside the landing folder


# --------------------------------------------------------------------------------------------------
# DuckDB queries built from user input are parameterized
# --------------------------------------------------------------------------------------------------

INJECTIONS = [
    "x' OR 1=1 --",
    "x'; DROP VIEW final_forecasts; --",
    "CA_1/FOODS_1' UNION SELECT feature, feature_value, shap_value, shap_units FROM shap_values --",
    'x"; DROP VIEW shap_values; --',
]


@pytest.fixture
def tiny_warehouse(tmp_path):
    """A warehouse of views over four small Parquet files, built by the real catalog code."""
    from forecasting_assets.storage.files import write_parquet
    from forecasting_assets.storage.warehouse import rebuild_catalog

    outputs = tmp_path / "it's outputs"  # a quote in the folder path: the catalog quotes it
    days = pd.date_range("2016-05-23", periods=3, freq="D")
    ids = ["CA_1/FOODS_1", "CA_1/FOODS_2"]
    shap = pd.DataFrame(
        [(uid, ds, f, 1.0, 0.5 * (i + 1), 2.0 * (i + 1)) for uid in ids for ds in days for i, f in enumerate(["lag7", "price", "dow"])],
        columns=["unique_id", "ds", "feature", "feature_value", "shap_value", "shap_units"],
    )
    write_parquet(shap, outputs / "shap_values.parquet")
    write_parquet(pd.DataFrame({"unique_id": ids * 3, "ds": days.repeat(2), "LightGBM": 10.0}), outputs / "base_forecasts.parquet")
    write_parquet(pd.DataFrame({"unique_id": ids * 3, "ds": days.repeat(2), "yhat": 11.0, "model": "LightGBM/MinTrace"}), outputs / "final_forecasts.parquet")
    write_parquet(pd.DataFrame({"unique_id": ids, "level": "store_dept", "level_order": 1}), outputs / "series_keys.parquet")
    write_parquet(pd.DataFrame({"x": [1]}), outputs / "evil; DROP VIEW final_forecasts; --.parquet")  # not an identifier
    warehouse = tmp_path / "warehouse.duckdb"
    views = rebuild_catalog(outputs, warehouse)
    assert sorted(views) == ["base_forecasts", "final_forecasts", "series_keys", "shap_values"]
    return warehouse


def _state(warehouse) -> dict:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        views = sorted(r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall())
        return {name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in views}
    finally:
        con.close()


@pytest.mark.parametrize("series", INJECTIONS)
def test_the_explain_queries_treat_a_series_id_as_a_value(tiny_warehouse, series, capsys):
    import duckdb

    from forecasting_assets.explain import cli

    before = _state(tiny_warehouse)
    con = duckdb.connect(str(tiny_warehouse))  # writable on purpose: an injected DROP would succeed
    try:
        assert len(cli.top_drivers_for(con, "CA_1/FOODS_1", "2016-05-24", top=2)) == 2  # the query works
        with pytest.raises(cli.NotExplained, match="has no SHAP values"):
            cli.top_drivers_for(con, series, "2016-05-24")
        summary = cli.forecast_summary(con, series, "2016-05-24")
        assert summary == {"shap_sum": 0.0, "n_features": 0, "lightgbm": None, "final": None, "final_model": None}
    finally:
        con.close()
    assert cli.main(["--series", series, "--day", "2016-05-24", "--warehouse", str(tiny_warehouse)]) == cli.EXIT_NOT_FOUND
    assert "has no SHAP values" in capsys.readouterr().err
    assert _state(tiny_warehouse) == before and "final_forecasts" in before


def test_the_warehouse_query_helper_binds_parameters(tiny_warehouse):
    from forecasting_assets.storage.warehouse import query

    sql = "SELECT count(*) AS n FROM final_forecasts WHERE unique_id = ?"
    assert query(sql, ["CA_1/FOODS_1"], warehouse=tiny_warehouse)["n"].iloc[0] == 3
    for series in INJECTIONS:
        assert query(sql, [series], warehouse=tiny_warehouse)["n"].iloc[0] == 0
    assert "final_forecasts" in _state(tiny_warehouse)


# --------------------------------------------------------------------------------------------------
# Models are loaded only from the project's own MLflow store
# --------------------------------------------------------------------------------------------------

MODEL = "lightgbm_security_test"


class _Canary:
    """Unpickling this creates ``path``: proof that a refused model was never deserialized."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


@pytest.fixture(scope="module")
def mlflow_project(tmp_path_factory):
    """A project home whose MLflow store holds one version of MODEL, registered the way the pipeline does."""
    import mlflow

    from forecasting_assets.models import registry
    from forecasting_assets.resources import mlflow_artifact_root, mlflow_tracking_uri

    home = tmp_path_factory.mktemp("mlflow_home")
    saved = {k: os.environ.get(k) for k in ("FORECASTING_ASSETS_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    os.environ["FORECASTING_ASSETS_HOME"] = str(home)
    try:
        (home / "data").mkdir()
        mlflow.set_tracking_uri(mlflow_tracking_uri())
        experiment = mlflow.create_experiment("forecasting_assets", artifact_location=mlflow_artifact_root().as_uri())
        with mlflow.start_run(experiment_id=experiment):
            version = registry.register({"marker": "project"}, MODEL)
        yield {"home": home, "version": version, "experiment": experiment}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def project(mlflow_project, monkeypatch):
    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(mlflow_project["home"]))
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # mlflow sets them: restored after the test
        monkeypatch.setenv(key, os.environ.get(key, ""))
    return mlflow_project


def test_a_version_registered_in_the_project_store_loads(project):
    from forecasting_assets.models import registry

    assert registry.load_version(MODEL, project["version"]) == {"marker": "project"}


def test_a_version_stored_outside_the_artifact_root_is_refused_before_unpickling(project, tmp_path):
    from forecasting_assets.models import registry
    from forecasting_assets.resources import mlflow_artifact_root

    client = registry.client()
    good = Path(registry.project_artifact_path(client.get_model_version_download_uri(MODEL, project["version"])))
    outside = tmp_path / "elsewhere" / "model"
    shutil.copytree(good, outside)
    canary = tmp_path / "unpickled"
    pickles = list(outside.rglob("*.pkl"))
    assert pickles, f"no pickle in {outside}"
    for pkl in pickles:
        pkl.write_bytes(pickle.dumps(_Canary(canary)))
    link = mlflow_artifact_root() / "models" / "linked_outside"
    link.symlink_to(outside, target_is_directory=True)
    escaping = f"{mlflow_artifact_root().as_uri()}/{os.path.relpath(outside, mlflow_artifact_root())}"  # root/../../..
    sources = [outside.as_uri(), str(outside), link.as_uri(), escaping, "s3://bucket/model", "http://127.0.0.1:9/model"]
    for source in sources:
        version = client.create_model_version(MODEL, source=source).version
        with pytest.raises(ValueError, match=re.escape(client.get_model_version_download_uri(MODEL, version))):
            registry.load_version(MODEL, version)
    assert not canary.exists()
    import mlflow.pyfunc

    with contextlib.suppress(Exception):  # loaded directly, the same files do run code when unpickled
        mlflow.pyfunc.load_model(outside.as_uri())
    assert canary.exists()
    with pytest.raises(ValueError, match="outside the project's own MLflow artifact root"):
        registry.project_artifact_path(outside.as_uri())
    assert registry.project_artifact_path(good.as_uri()) == good.resolve()


def test_the_environment_mlflow_uris_are_ignored(project, tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI pointing at another store change nothing: the registry reads,
    loads and registers in the project's own store (and never creates the other one)."""
    import mlflow
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils
    from mlflow.tracking import MlflowClient

    from forecasting_assets.models import registry
    from forecasting_assets.resources import mlflow_tracking_uri

    other = f"sqlite:///{tmp_path / 'other' / 'mlflow.db'}"
    (tmp_path / "other").mkdir()
    monkeypatch.setattr(registry_utils, "_registry_uri", None)  # as in a fresh process: only the env says
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", other)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", other)

    registry.set_alias(MODEL, registry.CHAMPION, project["version"])
    assert registry.version_by_alias(MODEL, registry.CHAMPION).version == str(project["version"])
    assert registry.load_version(MODEL, project["version"]) == {"marker": "project"}

    monkeypatch.setattr(registry_utils, "_registry_uri", None)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", other)
    mlflow.set_tracking_uri(mlflow_tracking_uri())  # the pipeline's MLflow resource does this for its run
    with mlflow.start_run(experiment_id=project["experiment"]):
        version = registry.register({"marker": "second"}, MODEL)
    own = MlflowClient(tracking_uri=mlflow_tracking_uri(), registry_uri=mlflow_tracking_uri())
    assert str(own.get_model_version(MODEL, version).version) == version
    assert registry.load_version(MODEL, version) == {"marker": "second"}
    assert not (tmp_path / "other" / "mlflow.db").exists()


def test_registering_from_a_run_whose_artifacts_go_elsewhere_is_refused(project, tmp_path):
    import mlflow

    from forecasting_assets.models import registry
    from forecasting_assets.resources import mlflow_tracking_uri

    mlflow.set_tracking_uri(mlflow_tracking_uri())
    experiment = mlflow.create_experiment("elsewhere", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        with pytest.raises(ValueError, match="outside the project's own MLflow artifact root"):
            registry.register({"marker": "elsewhere"}, MODEL)


# --------------------------------------------------------------------------------------------------
# make audit: pip-audit over requirements.lock
# --------------------------------------------------------------------------------------------------


@needs_make
def test_make_audit_audits_the_lock_file():
    dry = _make("-n", "audit")
    assert dry.returncode == 0, dry.stderr
    line = _server_line(dry.stdout, "pip-audit")
    assert "-r requirements.lock" in line and "--no-deps" in line and "--strict" in line
    assert "--cache-dir data/.cache/pip-audit" in line  # pip's cache in $HOME is never used


class _FakeOsv(BaseHTTPRequestHandler):
    """OSV's /v1/query: one advisory for ``flagged`` (name, version); nothing for any other package."""

    flagged: tuple[str, str] = ("", "")
    queries: list = []

    def do_POST(self):
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).queries.append(query)
        body = {}
        if (query["package"]["name"], query["version"]) == self.flagged:
            affected = [{"package": {"name": self.flagged[0], "ecosystem": "PyPI"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999.0"}]}]}]
            body = {"vulns": [{"id": "PYSEC-0000-TEST", "summary": "a test advisory", "affected": affected, "aliases": []}]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@needs_make
def test_make_audit_reports_a_known_vulnerability_and_fails(tmp_path):
    """The real target over the real lock file, against a fake OSV service on 127.0.0.1 (no network):
    every pin is queried, the flagged one is reported by name and version, and make exits non-zero."""
    if not (REPO_ROOT / ".venv" / "bin" / "pip-audit").exists():
        pytest.skip("pip-audit is not installed in .venv (make install)")
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO_ROOT / "requirements.lock").read_text(), re.MULTILINE))
    _FakeOsv.flagged = ("requests", pins["requests"])
    _FakeOsv.queries = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOsv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/query"
        # -o: never reinstall here; the later --cache-dir wins over the Makefile's (no write into data/)
        result = _make("-o", ".venv/.installed", "audit", f"AUDIT_ARGS=-s osv --osv-url {url} --cache-dir {tmp_path / 'cache'}", timeout=300)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode != 0
    assert re.search(rf"^requests\s+{re.escape(pins['requests'])}\s+PYSEC-0000-TEST\s+999\.0", result.stdout, re.MULTILINE), result.stdout
    assert "Found 1 known vulnerability in 1 package" in result.stderr
    assert {q["package"]["name"] for q in _FakeOsv.queries} >= {"requests", "dagster", "mlflow", "duckdb"}
    assert len(_FakeOsv.queries) == len(pins)


def test_pip_audit_finds_a_known_vulnerability_on_pypi(tmp_path):
    """pip-audit's default service (PyPI's per-version JSON API) on an old requests with published advisories."""
    probe = "https://pypi.org/pypi/requests/2.19.0/json"
    try:
        with urllib.request.urlopen(probe, timeout=10) as response:
            assert "vulnerabilities" in json.load(response)
    except urllib.error.HTTPError as error:
        pytest.skip(f"PyPI's per-version JSON API is not served here ({probe}: HTTP {error.code}): pip-audit cannot audit from this machine")
    except (urllib.error.URLError, OSError) as error:
        pytest.skip(f"PyPI is unreachable ({probe}: {error})")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("requests==2.19.0\n")
    pip_audit = [str(REPO_ROOT / ".venv" / "bin" / "pip-audit"), "-r", str(requirements), "--no-deps", "--disable-pip", "--strict"]
    result = subprocess.run(
        [*pip_audit, "--progress-spinner", "off", "--cache-dir", str(tmp_path / "cache"), "-f", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    vulns = [v["id"] for d in report["dependencies"] if d["name"] == "requests" for v in d["vulns"]]
    assert vulns, report
