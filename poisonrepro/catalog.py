"""The fourteen papers of the compendium: their notebooks, titles, links and artifact ids.

This list, the artifact catalogue, is the one source of each notebook's artifact ids (the tables,
figures and claims of the source documents named in the README): the overview's index shows them,
and the tests derive what a notebook must write from them (a notebook may add panels of an
artifact, named by a lowercase letter after its id: ``BS-1a``). All fourteen are listed from the
start, so adding a paper's notebook edits nothing here.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from . import paths


class Paper(NamedTuple):
    notebook: str       # notebooks/<notebook>.ipynb, e.g. "01_poison_frogs"
    title: str
    link: str
    artifacts: list     # the source documents' artifact ids

    @property
    def name(self) -> str:
        """The paper's name everywhere else: the notebook's stem without its number
        (``poisonrepro.config.<name>``, ``poisonrepro.papers.<name>``, ``reference/<name>.csv``)."""
        return self.notebook.split("_", 1)[1]


PAPERS = [Paper(*row) for row in [
    ("00_overview", "Overview: index, attack taxonomy, Barreno et al. tables", "", ["L-TAX"]),
    ("01_poison_frogs", "Shafahi et al. 2018, Poison Frogs! Targeted Clean-Label Poisoning Attacks on Neural Networks",
     "https://arxiv.org/abs/1804.00792", ["PF-F1", "PF-F2", "PF-F3", "PF-F4", "PF-F5", "PF-F6", "PF-F7", "PF-F8", "PF-F9", "FC-1"]),
    ("02_convex_polytope", "Zhu et al. 2019, Transferable Clean-Label Poisoning Attacks on Deep Neural Nets",
     "https://arxiv.org/abs/1905.05897", ["CP-1", "CP-2"]),
    ("03_metapoison", "Huang et al. 2020, MetaPoison: Practical General-purpose Clean-label Data Poisoning",
     "https://arxiv.org/abs/2004.00225", ["MP-1"]),
    ("04_witches_brew", "Geiping et al. 2021, Witches' Brew: Industrial Scale Data Poisoning via Gradient Matching",
     "https://arxiv.org/abs/2009.02276", ["WB-T1", "WB-A"]),
    ("05_biggio_svm", "Biggio, Nelson, Laskov 2012, Poisoning Attacks against Support Vector Machines",
     "https://arxiv.org/abs/1206.6389", ["BS-1"]),
    ("06_back_gradient", "Munoz-Gonzalez et al. 2017, Towards Poisoning of Deep Learning Algorithms with Back-gradient Optimization",
     "https://arxiv.org/abs/1708.08689", ["MG-1", "MG-2", "MG-3", "MG-4", "MG-5", "MG-6", "MG-7", "MG-8", "MG-10", "LF-1"]),
    ("07_pgan", "Munoz-Gonzalez et al. 2019, Poisoning Attacks with Generative Adversarial Nets",
     "https://arxiv.org/abs/1906.07773", ["GEN-1", "PGAN-1"]),
    ("08_influence", "Koh and Liang 2017, Understanding Black-box Predictions via Influence Functions",
     "https://arxiv.org/abs/1703.04730", ["INF-1"]),
    ("09_trimmed_loss", "Shen and Sanghavi 2019, Learning with Bad Training Data via Iterative Trimmed Loss Minimization",
     "https://arxiv.org/abs/1810.11874", ["TL-1"]),
    ("10_dpa", "Levine and Feizi 2021, Deep Partition Aggregation: Provable Defense against General Poisoning Attacks",
     "https://arxiv.org/abs/2006.14768", ["DPA-1"]),
    ("11_abl", "Li et al. 2021, Anti-Backdoor Learning: Training Clean Models on Poisoned Data",
     "https://arxiv.org/abs/2110.11571", ["ABL-1", "ABL-2"]),
    ("12_unlearnable_examples", "Huang et al. 2021, Unlearnable Examples: Making Personal Data Unexploitable",
     "https://arxiv.org/abs/2101.04898", ["UE-1", "UE-2", "UE-3", "UE-4", "UE-5"]),
    ("13_unlearnable_clusters", "Zhang et al. 2023, Unlearnable Clusters: Towards Label-agnostic Unlearnable Examples",
     "https://arxiv.org/abs/2301.01217", ["UC-T1", "UC-F4", "UC-T3", "UC-AT", "UC-P"]),
    ("14_tue", "Ren et al. 2023, Transferable Unlearnable Examples",
     "https://arxiv.org/abs/2210.10114", ["TUE-LS", "TUE-SN", "TUE-T2", "TUE-TT", "TUE-T5", "TUE-T6", "TUE-INT"]),
]]


def entry(name: str) -> Paper:
    """The catalog entry of a paper, by name (``poison_frogs``) or notebook stem (``01_poison_frogs``)."""
    for paper in PAPERS:
        if name in (paper.name, paper.notebook):
            return paper
    raise KeyError(f"unknown paper {name!r}; known: {', '.join(p.name for p in PAPERS)}")


def status(stem: str) -> str:
    """'done' where the notebook exists in the repository, else 'not yet'."""
    return "done" if (paths.repo_root() / "notebooks" / f"{stem}.ipynb").exists() else "not yet"


def is_artifact_of(artifact: str, paper: Paper) -> bool:
    """Whether ``artifact`` is one of the paper's ids or a panel of one (the id and a lowercase letter)."""
    return any(re.fullmatch(re.escape(a) + "[a-z]?", artifact) for a in paper.artifacts)
