"""Parts of the graph on doctored demo data: quarantine of seeded bad rows, drift injected vs not."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from forecasting_assets.definitions import STAGES, build_resources
from forecasting_assets.demo_data import write_demo
from forecasting_assets.resources import ForecastSettings, SalesSource
from forecasting_assets.storage.io_manager import WarehouseIOManager

ASSETS = dg.load_assets_from_modules(STAGES)


def _materialize(folder, home, target: str, **settings):
    resources = {
        **build_resources(),
        "io_manager": WarehouseIOManager(base_dir=str(home / "outputs"), warehouse=str(home / "warehouse.duckdb")),
        "source": SalesSource(folder=str(folder), landing_folder=str(home / "landing")),
        "settings": ForecastSettings(**settings),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(ASSETS, selection=(dg.AssetSelection.assets(target).upstream() - dg.AssetSelection.assets("landed_sales")).required_multi_asset_neighbors(), resources=resources, instance=instance)
        assert result.success
    return result


def test_quarantine_catches_seeded_bad_rows_and_keeps_the_good_ones(tmp_path):
    folder = tmp_path / "long"
    write_demo(folder, shape="tiny", seed=3, fmt="long")
    sales = pd.read_csv(folder / "sales.csv", dtype=str, keep_default_na=False)
    good = len(sales)
    bad = sales.head(5).copy()
    bad.loc[bad.index[0], "sales"] = "-4"  # negative
    bad.loc[bad.index[1], "sales"] = "lots"  # text in a number column
    bad.loc[bad.index[2], "date"] = "2011-02-30"  # no such day
    # row 3: an exact duplicate of an existing key
    bad.loc[bad.index[4], "store_id"] = ""  # missing id
    pd.concat([sales, bad]).to_csv(folder / "sales.csv", index=False)

    result = _materialize(folder, tmp_path, "validated_sales")
    quarantine = result.output_for_node("validated_sales", "sales_quarantine")
    validated = result.output_for_node("validated_sales", "validated_sales")
    assert len(quarantine) == 5
    assert len(validated) == good - 0  # the first occurrence of the duplicated key is kept
    reasons = " ".join(quarantine["reason"]).lower()
    for word in ("negative", "number", "date", "duplicate"):
        assert word in reasons, word
    assert quarantine["source_row"].notna().all()


@pytest.mark.parametrize("factor, drifted", [(1.0, False), (1.6, True)])
def test_drift_is_detected_when_injected_and_not_otherwise(tmp_path, factor, drifted):
    folder = tmp_path / "demo"
    write_demo(folder, shape="small", seed=5)
    wide = pd.read_csv(folder / "sales.csv")
    days = [c for c in wide.columns if c.startswith("d_")]
    last = days[-28:]
    wide[last] = np.round(wide[last] * factor).astype(int)
    wide.to_csv(folder / "sales.csv", index=False)

    result = _materialize(folder, tmp_path, "drift_report")
    report = result.output_for_node("drift_report")
    assert bool(report["dataset_drift"].iloc[0]) is drifted
    share = float(report["drift_share"].iloc[0])
    assert (share >= 0.5) if drifted else (share < 0.5)
