"""``python -m forecasting_assets.explain --series ID --day YYYY-MM-DD``: the SHAP CLI (see ``cli.py``)."""

import sys

from forecasting_assets.explain.cli import main

sys.exit(main())
