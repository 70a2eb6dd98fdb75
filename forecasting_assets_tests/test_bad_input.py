"""The bad-input matrix (cases in bad_inputs.py): each case's outcome, the generated docs page, and a broken
source that fails the run with a clear error while every stored output stays as it was."""

from pathlib import Path

import pandas as pd
import pytest

from forecasting_assets_tests.bad_inputs import ACCEPTED, CASES, QUARANTINED, REFUSED, observe_all, render

DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"


@pytest.fixture(scope="module")
def observations(tmp_path_factory):
    return observe_all(tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_bad_input_case(case, observations) -> None:
    found = observations[case.key]
    told = "; ".join([found.message, *found.facts])
    assert found.outcome == case.expect, told
    assert case.expect_text in told
    if found.outcome == QUARANTINED:
        assert 0 < found.quarantined < found.rows_in  # the rest of the file is taken in
    if found.outcome == REFUSED:
        assert "sales_new.csv" in told or "calendar.csv" in told  # the message names the file


def test_every_outcome_kind_is_exercised() -> None:
    assert {c.expect for c in CASES} == {ACCEPTED, QUARANTINED, REFUSED}


def test_docs_page_is_generated_from_the_cases(observations) -> None:
    expected = render(observations)
    assert DOCS_PAGE.exists() and DOCS_PAGE.read_text() == expected, (
        "docs/bad-input.md is out of date: run `make docs`"
    )


def test_a_broken_source_fails_the_run_and_leaves_stored_outputs_intact(tmp_path: Path, monkeypatch) -> None:
    import dagster as dg

    from forecasting_assets.definitions import build_definitions
    from forecasting_assets.paths import outputs_dir
    from forecasting_assets.resources import SalesSource

    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tmp_path))
    source = tmp_path / "source"
    source.mkdir()
    days = pd.date_range("2024-01-01", periods=60, freq="D").strftime("%Y-%m-%d")
    good = pd.DataFrame(
        [(d, store, item, (i + len(store)) % 5) for i, d in enumerate(days) for store in ("S1", "S2") for item in ("A", "B")],
        columns=["date", "store_id", "item_id", "sales"],
    )
    good.to_csv(source / "sales.csv", index=False)
    defs = build_definitions({"source": SalesSource(folder=str(source), landing_folder=str(tmp_path / "landing"))})
    selection = [dg.AssetKey(k) for k in ("raw_sales", "source_spec", "sales_calendar", "validated_sales", "sales_quarantine")]
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    job.execute_in_process(instance=instance, asset_selection=selection)
    stored = {p.name: p.read_bytes() for p in outputs_dir().glob("*.parquet")}
    assert {"raw_sales.parquet", "validated_sales.parquet"} <= set(stored)

    broken = good.astype({"sales": object})
    broken.to_csv(source / "sales.csv", index=False, sep=";")
    result = job.execute_in_process(instance=instance, asset_selection=selection, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)
    assert "sales.csv" in message and "';'" in message and "line 2: 2024-01-01;S1;A;" in message
    assert {p.name: p.read_bytes() for p in outputs_dir().glob("*.parquet")} == stored
    assert not list(outputs_dir().glob(".*.tmp-*"))
