"""advlib.recsys: implicit-feedback recommenders trained with BPR and APR, measured by full
ranking, and their robustness to perturbations of the embeddings.

Defined in chapter 5. Plain functions on tensors: every model, sampler and metric takes
:class:`Interactions` (user and item index tensors) together with ``n_users`` and ``n_items``,
so a training set with extra (fake) users appended trains the same way.

* data: :func:`load_implicit`, :func:`implicit_from_movielens`, :func:`random_split` (RecBole's
  per-user 80/10/10), :func:`leave_one_out_split`;
* sampling: :class:`PairSet`, :func:`sample_negatives`;
* models: :class:`MF`, :func:`bpr_loss`, :class:`Popularity`;
* training: :func:`train_bpr`, :func:`train_apr`, :func:`apr_delta`, :func:`apr_perturbation`;
* metrics: :func:`ranking_task`, :func:`evaluate` (full ranking), :func:`sampled_evaluate`
  (99 sampled negatives), :func:`ndcg_at_k`;
* robustness: :func:`robustness_curve`, :func:`worst_case_perturbation`,
  :func:`random_perturbation`, :func:`attack_gradient`;
* exercise checks: :mod:`advlib.recsys.checks`;
* chapter 7, items as text (a frozen sentence encoder, its embedding cache, content and hybrid
  towers, the long tail): :mod:`advlib.recsys.text`; the title-editing attack, exposure and the
  edit check: :mod:`advlib.recsys.text_attack`; exercise checks: :mod:`advlib.recsys.text_checks`;
* chapter 8, a transformer sequence recommender (SASRec), its adversarial training and the
  history-substitution attack: :mod:`advlib.recsys.sequential`.
"""
from . import checks
from .data import (ImplicitData, Interactions, Split, implicit_from_movielens, item_popularity,
                   leave_one_out_split, load_implicit, random_split)
from .metrics import (RankingTask, evaluate, ndcg_at_k, ranking_task, sampled_evaluate,
                      score_fn, topk_hits)
from .models import MF, Popularity, bpr_loss
from .robustness import (attack_gradient, loss_gradient, random_perturbation, robustness_curve,
                         row_eps, worst_case_perturbation)
from .sampling import PairSet, sample_negatives
from .training import TrainResult, apr_delta, apr_perturbation, train_apr, train_bpr
from . import poisoning
from . import sequential

__all__ = [
    "ImplicitData", "Interactions", "Split", "implicit_from_movielens", "item_popularity",
    "leave_one_out_split", "load_implicit", "random_split",
    "RankingTask", "evaluate", "ndcg_at_k", "ranking_task", "sampled_evaluate", "score_fn",
    "topk_hits",
    "MF", "Popularity", "bpr_loss",
    "attack_gradient", "loss_gradient", "random_perturbation", "robustness_curve", "row_eps",
    "worst_case_perturbation",
    "PairSet", "sample_negatives",
    "TrainResult", "apr_delta", "apr_perturbation", "train_apr", "train_bpr",
    "checks", "poisoning", "sequential",
]
