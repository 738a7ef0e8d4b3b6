"""``make plan`` rows for notebook 14 before it is built: the settings of Ren et al. 2023,
"Transferable Unlearnable Examples" (ICLR 2023), and its code (renjie3/TUE). Once the notebook
exists, ``experiments.plan(cfg)`` replaces these rows (``poisonrepro.plan.paper_settings``)."""
from ...plan import settings_row

ROWS = [settings_row("evaluations", 3 * 2 * 5,
                     basis="Ren et al. 2023 (TUE), and the training-wise transferability table of the lecture deck 'Data "
                           "Poisoning: Attacks and Defenses' (X. Ma; artifact TUE-TT): SimCLR/MoCo/SimSiam x "
                           "supervised/unsupervised x 5 protections; the evaluation epochs of the SSL methods are not "
                           "confirmed from the paper or its code")]
