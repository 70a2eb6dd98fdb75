"""The exploration notebook runs top to bottom on the tiny project; the SHAP CLI prints one forecast's drivers."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from forecasting_assets.paths import REPO_ROOT

pytestmark = pytest.mark.slow

NOTEBOOK = REPO_ROOT / "notebooks" / "explore_forecasts.ipynb"
# where Jupyter and IPython would otherwise write under $HOME
HOME_DIRS = [Path.home() / ".local" / "share" / "jupyter", Path.home() / ".ipython", Path.home() / ".jupyter"]


def _home_state() -> dict[str, list[str] | None]:
    """Each of HOME_DIRS: None when absent, else every path under it."""
    return {str(d): sorted(str(p) for p in d.rglob("*")) if d.exists() else None for d in HOME_DIRS}


def _isolate_jupyter(tmp_path: Path, monkeypatch) -> None:
    """Point every directory Jupyter and IPython write to under tmp_path."""
    dirs = {
        "JUPYTER_RUNTIME_DIR": tmp_path / "jupyter_runtime",  # kernel connection files
        "JUPYTER_DATA_DIR": tmp_path / "jupyter_data",  # user kernel specs and data
        "JUPYTER_CONFIG_DIR": tmp_path / "jupyter_config",
        "IPYTHONDIR": tmp_path / "ipython",  # the kernel's profile and history.sqlite
    }
    for name, folder in dirs.items():
        folder.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    # matplotlib's font cache: the package already points it into the project's data/.cache when imported
    monkeypatch.setenv("MPLCONFIGDIR", os.environ.get("MPLCONFIGDIR") or str(tmp_path / "matplotlib"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, whatever the test process uses


def _python3_kernel(tmp_path: Path, monkeypatch) -> str:
    """The python3 kernel spec, launching this interpreter (the venv's, which has duckdb and the package).

    The venv ships one in ``<venv>/share/jupyter/kernels/python3`` (argv ``python``, which jupyter_client
    replaces by ``sys.executable``). When none is found, or it names another interpreter, ipykernel's spec
    for this interpreter is written under tmp_path and put first on JUPYTER_PATH (in a venv Jupyter searches
    the environment before JUPYTER_DATA_DIR, so the data dir would not shadow a wrong spec there).
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
        launcher = spec.argv[0]
        usable = launcher in {"python", "python3"} or Path(launcher).resolve() == Path(sys.executable).resolve()
    except NoSuchKernel:
        usable = False
    if not usable:
        from ipykernel.kernelspec import write_kernel_spec

        kernels_root = tmp_path / "jupyter_path"
        write_kernel_spec(kernels_root / "kernels" / "python3")  # argv: sys.executable -m ipykernel_launcher
        monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(kernels_root), os.environ.get("JUPYTER_PATH")])))
        spec = KernelSpecManager().get_kernel_spec("python3")
        assert Path(spec.resource_dir).is_relative_to(kernels_root), spec.resource_dir
    assert not Path(spec.resource_dir).resolve().is_relative_to(Path.home() / ".local"), spec.resource_dir
    return "python3"


def test_committed_notebook_has_no_outputs() -> None:
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_top_to_bottom_on_the_tiny_project(tiny_project, tmp_path, monkeypatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tiny_project["home"]))
    _isolate_jupyter(tmp_path, monkeypatch)
    kernel = _python3_kernel(tmp_path, monkeypatch)
    before = _home_state()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name=kernel, allow_errors=True, resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()

    errors = [
        f"cell {i} ({o['ename']}: {o['evalue']}):\n{cell.source}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type == "error"
    ]
    assert not errors, "\n\n".join(errors)
    images = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 1
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert str(Path(tiny_project["home"]).resolve() / "data" / "warehouse.duckdb") in text  # found through FORECASTING_ASSETS_HOME
    assert _home_state() == before, "Jupyter or IPython wrote under $HOME"


# --- the SHAP CLI ---------------------------------------------------------------------------------------------


@pytest.fixture()
def warehouse(tiny_project, monkeypatch) -> Path:
    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tiny_project["home"]))
    from forecasting_assets.paths import warehouse_path

    return warehouse_path()


@pytest.fixture()
def explained(warehouse) -> dict:
    """One (series, day) that shap_values explains — a two-part id like CA_1/FOODS_1 when there is one — and the
    explained day range."""
    from forecasting_assets.storage.warehouse import query

    row = query("SELECT unique_id, min(ds) AS ds FROM shap_values GROUP BY unique_id ORDER BY (unique_id LIKE '%/%') DESC, unique_id LIMIT 1", warehouse=warehouse)
    span = query("SELECT min(ds) AS first, max(ds) AS last FROM shap_values", warehouse=warehouse)
    ids = set(query("SELECT DISTINCT unique_id FROM shap_values", warehouse=warehouse)["unique_id"])
    return {
        "series": row["unique_id"].iloc[0],
        "day": pd.Timestamp(row["ds"].iloc[0]),
        "first": pd.Timestamp(span["first"].iloc[0]),
        "last": pd.Timestamp(span["last"].iloc[0]),
        "ids": ids,
    }


def _cli(*args: str) -> subprocess.CompletedProcess:
    # the environment carries FORECASTING_ASSETS_HOME (monkeypatched to the tiny project), so no --warehouse needed
    return subprocess.run([sys.executable, "-m", "forecasting_assets.explain.cli", *args], capture_output=True, text=True, env=os.environ.copy(), cwd=REPO_ROOT, timeout=120)


def test_top_drivers_for_sorts_by_absolute_shap_units(warehouse, explained) -> None:
    from forecasting_assets.explain.cli import top_drivers_for
    from forecasting_assets.storage.warehouse import connect

    con = connect(warehouse)
    try:
        drivers = top_drivers_for(con, explained["series"], explained["day"].date().isoformat(), top=7)
        everything = con.execute("SELECT feature, shap_units FROM shap_values WHERE unique_id = ? AND ds = ?", [explained["series"], explained["day"].to_pydatetime()]).df()
    finally:
        con.close()
    assert list(drivers.columns) == ["rank", "feature", "feature_value", "shap_value", "shap_units"]
    assert list(drivers["rank"]) == list(range(1, 8))
    magnitude = drivers["shap_units"].abs().to_numpy()
    assert (magnitude[:-1] >= magnitude[1:]).all()
    assert drivers["feature"].is_unique
    # they are the strongest of all the features of that forecast
    assert magnitude[-1] >= everything.set_index("feature").drop(drivers["feature"])["shap_units"].abs().max()


def test_top_drivers_for_names_the_missing_series(warehouse) -> None:
    from forecasting_assets.explain.cli import NotExplained, top_drivers_for
    from forecasting_assets.storage.warehouse import connect

    con = connect(warehouse)
    try:
        with pytest.raises(NotExplained, match="NO_SUCH_SERIES.*sample"):
            top_drivers_for(con, "NO_SUCH_SERIES", "2012-03-01")
    finally:
        con.close()


def test_cli_prints_the_drivers_and_the_forecast(explained, warehouse) -> None:
    from forecasting_assets.explain.cli import top_drivers_for
    from forecasting_assets.storage.warehouse import connect

    day = explained["day"].date().isoformat()
    result = _cli("--series", explained["series"], "--day", day, "--top", "5")
    assert result.returncode == 0, result.stderr
    con = connect(warehouse)
    try:
        expected = top_drivers_for(con, explained["series"], day, top=5)
    finally:
        con.close()
    lines = result.stdout.splitlines()
    assert explained["series"] in lines[0] and day in lines[0]
    for feature in expected["feature"]:
        assert any(line.split()[1:2] == [feature] for line in lines), feature
    assert "sum of SHAP" in result.stdout
    assert "LightGBM forecast (base_forecasts)" in result.stdout
    assert "served forecast (final_forecasts" in result.stdout


def test_cli_unknown_series_exits_2_and_lists_explained_ids(explained) -> None:
    result = _cli("--series", "NO_SUCH/SERIES", "--day", explained["day"].date().isoformat())
    assert result.returncode == 2
    assert "NO_SUCH/SERIES" in result.stderr and "sample" in result.stderr
    listed = result.stderr.strip().rsplit(": ", 1)[-1].removesuffix(", ...").split(", ")
    assert len(listed) >= 3 and set(listed) <= explained["ids"]  # a few explained ids are listed
    assert result.stdout == ""


def test_cli_day_outside_the_explained_range_exits_2(explained) -> None:
    day = (explained["last"] + pd.Timedelta(days=365)).date().isoformat()
    result = _cli("--series", explained["series"], "--day", day, "--warehouse", str(Path(os.environ["FORECASTING_ASSETS_HOME"]) / "data" / "warehouse.duckdb"))
    assert result.returncode == 2
    assert day in result.stderr and explained["series"] in result.stderr
    assert explained["first"].date().isoformat() in result.stderr and explained["last"].date().isoformat() in result.stderr
