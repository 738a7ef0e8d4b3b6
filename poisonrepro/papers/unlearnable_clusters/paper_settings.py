"""``make plan`` rows for notebook 13 before it is built: the settings of Zhang et al. 2023,
"Unlearnable Clusters: Towards Label-agnostic Unlearnable Examples" (CVPR 2023), and its code
(jiamingzhang94/Unlearnable-Clusters). Once the notebook exists, ``experiments.plan(cfg)`` replaces
these rows (``poisonrepro.plan.paper_settings``)."""
from ...plan import settings_row

ROWS = [settings_row("victims", None, basis="Zhang et al. 2023 (UC) and its authors' code: ResNet-18 90 epochs, but the "
                                            "datasets' sizes and the tables' settings are UNCONFIRMED")]
