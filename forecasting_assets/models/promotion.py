"""The promotion gate: a retrained model serves only if it beats the champion on the same backtest.

Both are scored on the same rolling-origin windows of the current data: the candidate's backtest is the
LightGBM column of ``backtest_forecasts``; the champion's configuration (its hyperparameters) is refit on
the same windows. Refitting the champion's own configuration on newer data is not an improvement to prove:
when the configurations are identical, the candidate (fitted on newer data) is promoted on a tie.
A champion trained on days after the current training data (a run with an earlier ``train_end``) is not
eligible: it is treated as absent, and the candidate serves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PROMOTED = "promoted"
KEPT = "kept_champion"
AWAITING_APPROVAL = "awaiting_approval"


@dataclass
class PromotionDecision:
    decision: str  # promoted | kept_champion | awaiting_approval
    reason: str
    candidate_wrmsse: float
    champion_wrmsse: float | None
    drift_share: float

    def to_dict(self) -> dict:
        return asdict(self)


def decide_promotion(
    candidate_wrmsse: float,
    champion_wrmsse: float | None,
    same_configuration: bool,
    drift_share: float,
    approval_drift_threshold: float,
    ineligible_champion: str = "",
) -> PromotionDecision:
    """Promote, keep the champion, or wait for a human (drift share at or above the approval threshold).

    ``ineligible_champion`` names a champion that exists but may not serve this run (trained past its data):
    the candidate then serves, as when there is no champion."""

    def decision(kind: str, reason: str) -> PromotionDecision:
        return PromotionDecision(kind, reason, candidate_wrmsse, champion_wrmsse, drift_share)

    if ineligible_champion:
        return decision(PROMOTED, f"{ineligible_champion} was trained on days after this run's training data, so it is not eligible: the candidate serves")
    if champion_wrmsse is None:
        return decision(PROMOTED, "no champion yet: the first model serves")
    scores = f"backtest WRMSSE {candidate_wrmsse:.4f} vs champion {champion_wrmsse:.4f}"
    beats = candidate_wrmsse < champion_wrmsse or (same_configuration and candidate_wrmsse <= champion_wrmsse)
    if not beats:
        return decision(KEPT, f"the candidate does not beat the champion ({scores})")
    why = "same configuration refit on newer data" if same_configuration and candidate_wrmsse >= champion_wrmsse else "beats the champion"
    if drift_share >= approval_drift_threshold:
        return decision(
            AWAITING_APPROVAL,
            f"{why} ({scores}), but the drift share {drift_share:.2f} is at or above {approval_drift_threshold:.2f}: "
            "waits for a human to materialize model_approval",
        )
    return decision(PROMOTED, f"{why} ({scores})")
