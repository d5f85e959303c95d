"""Match predictors: skip the index lookup for prompts that will probably miss.

A predictor answers "look this prompt up?" before the lookup. A predicted miss saves the
index lookup (and there is nothing to fetch); a predicted miss that would have hit loses
that hit, and the request is generated from scratch. Five kinds (``predictor.kind``):

* ``none``: always look up.
* ``oracle``: knows the answer: looks up exactly the requests that will reuse something.
* ``model``: not a model of anything: a stand-in classifier with the configured precision and
  recall for the class "hit" (coin flips that see the true outcome), to ask what a predictor of
  a given quality would buy.
* ``learned``: a logistic regression on prompt embeddings, trained on the outcomes of the
  first ``warmup`` requests (all of which are looked up), then applied to the rest.
* ``ocsvm``: the paper's predictor, a one-class SVM (scikit-learn) fitted on the embeddings of
  the warm-up's prompts that hit; a later prompt is looked up when the SVM calls it an inlier.

Predictors with ``needs_truth`` see the real outcome first (the engine runs the lookup to
learn it and discards it when the predictor says skip); the others decide blind, and the engine
counts the hits they lose by asking the system whether a skipped lookup would have reused
something (``System.probe``), so every predictor reports the same precision, recall and lost
hits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sim.base.errors import ConfigError

if TYPE_CHECKING:
    from sim.base.config import PredictorConfig


class Predictor:
    """Base class: always look up.

    Class attributes declare what a predictor needs: ``needs_truth`` (it sees the real outcome
    of each lookup before deciding) and ``needs_embeddings`` (it reads the prompt embeddings, so
    a run must compute them even for systems that do not search by similarity).
    """

    needs_truth: ClassVar[bool] = False
    needs_embeddings: ClassVar[bool] = False

    def __init__(
        self, cfg: PredictorConfig, prompt_ids: np.ndarray, embeddings: np.ndarray | None, seed: int
    ):
        self.cfg = cfg
        self.prompt_ids = prompt_ids
        self.skipped = 0  # lookups skipped

    def look(self, i: int, hit: bool | None) -> bool:
        """Whether request ``i`` should be looked up (``hit`` is the truth when ``needs_truth``)."""
        return True

    def observe(self, i: int, hit: bool) -> None:
        """Learn from the outcome of a lookup that did happen."""

    def stats(self) -> dict[str, float]:
        """Counters reported beside the run's summary."""
        return {"predictor_skipped": self.skipped}


class NoPredictor(Predictor):
    """Look every request up."""


class OraclePredictor(Predictor):
    """Perfect prediction: skip exactly the lookups that would miss."""

    needs_truth = True

    def look(self, i: int, hit: bool | None) -> bool:
        if not hit:
            self.skipped += 1
        return bool(hit)


class ModelPredictor(Predictor):
    """A classifier with fixed precision and recall for the class "will hit".

    A true hit is looked up with probability ``recall``. A true miss is looked up with the
    probability ``q`` that makes the precision come out as configured given the hit rate
    seen so far: precision = r h / (r h + q (1 - h)), so q = r h (1 - p) / (p (1 - h)).
    """

    needs_truth = True

    def __init__(
        self, cfg: PredictorConfig, prompt_ids: np.ndarray, embeddings: np.ndarray | None, seed: int
    ):
        super().__init__(cfg, prompt_ids, embeddings, seed)
        self.rng = np.random.default_rng(seed)
        # Draw the coin flips in bulk: one uniform per request.
        self.u = self.rng.random(len(prompt_ids))
        self.hits = 0
        self.seen = 0

    def look(self, i: int, hit: bool | None) -> bool:
        self.seen += 1
        p, r = self.cfg.precision, self.cfg.recall
        if hit:
            self.hits += 1
            ok = self.u[i] < r
        else:
            # Laplace-smoothed running hit rate, so the first requests get a sensible q.
            h = (self.hits + 1) / (self.seen + 2)
            q = min(1.0, r * h * (1 - p) / (p * (1 - h)))
            ok = self.u[i] < q
        if not ok:
            self.skipped += 1
        return bool(ok)


class LearnedPredictor(Predictor):
    """Logistic regression on prompt embeddings, trained on a warm-up window of outcomes.

    The first ``warmup`` requests are all looked up and their outcomes labelled; the model
    is then fitted once and scores every unique prompt in one vectorised call, so the
    per-request cost afterwards is one array read. With class weights balanced, a prompt is
    skipped when its hit probability is below one half. If the warm-up saw only one class,
    there is nothing to learn and every later request is looked up.
    """

    needs_embeddings = True

    def __init__(
        self, cfg: PredictorConfig, prompt_ids: np.ndarray, embeddings: np.ndarray | None, seed: int
    ):
        super().__init__(cfg, prompt_ids, embeddings, seed)
        if embeddings is None:
            raise ConfigError("predictor.kind", "learned", "needs prompt embeddings; this run has none")
        self.embeddings = embeddings
        self.seed = seed
        self.labels: list[bool] = []
        self.p_hit: np.ndarray | None = None
        self.trained = False

    def look(self, i: int, hit: bool | None) -> bool:
        if self.p_hit is None:
            return True
        ok = bool(self.p_hit[self.prompt_ids[i]] >= 0.5)
        if not ok:
            self.skipped += 1
        return ok

    def observe(self, i: int, hit: bool) -> None:
        if self.p_hit is not None:
            return
        self.labels.append(hit)
        if len(self.labels) >= self.cfg.warmup:
            self._fit()

    def _fit(self) -> None:
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(self.labels, dtype=bool)
        if y.all() or not y.any():
            self.p_hit = np.ones(len(self.embeddings))
            return
        x = self.embeddings[self.prompt_ids[: len(y)]]
        model = LogisticRegression(class_weight="balanced", max_iter=500, random_state=self.seed)
        model.fit(x, y)
        self.p_hit = model.predict_proba(self.embeddings)[:, 1]
        self.trained = True

    def stats(self) -> dict[str, float]:
        return {**super().stats(), "predictor_trained": float(self.trained)}


class OneClassSvmPredictor(Predictor):
    """One-class SVM on prompt embeddings, fitted on the warm-up's prompts that hit (Nirvana's predictor).

    The first ``warmup`` requests are all looked up; the embeddings of those that reused
    something are the one class the SVM learns (scikit-learn ``OneClassSVM``, RBF kernel,
    ``gamma="scale"``, ``nu`` = ``predictor.nu``: at most that share of the training hits fall
    outside the learned region, so it bounds the recall on prompts like them from below at
    about 1 - nu). After the fit every unique prompt is scored once; a later request is looked
    up when its prompt is an inlier (decision function >= 0). Fewer than two warm-up hits leave
    nothing to learn, and every later request is looked up. The fit is not repeated: what hits
    later depends on what the cache holds then, which the embedding alone cannot know.
    """

    needs_embeddings = True
    max_training = 5000  # the fit is quadratic in the samples: keep it to seconds

    def __init__(
        self, cfg: PredictorConfig, prompt_ids: np.ndarray, embeddings: np.ndarray | None, seed: int
    ):
        super().__init__(cfg, prompt_ids, embeddings, seed)
        if embeddings is None:
            raise ConfigError("predictor.kind", "ocsvm", "needs prompt embeddings; this run has none")
        self.embeddings = embeddings
        self.seed = seed
        self.seen = 0
        self.hit_ids: list[int] = []
        self.inlier: np.ndarray | None = None
        self.trained = False

    def look(self, i: int, hit: bool | None) -> bool:
        if self.inlier is None:
            return True
        ok = bool(self.inlier[self.prompt_ids[i]])
        if not ok:
            self.skipped += 1
        return ok

    def observe(self, i: int, hit: bool) -> None:
        if self.inlier is not None:
            return
        self.seen += 1
        if hit:
            self.hit_ids.append(int(self.prompt_ids[i]))
        if self.seen >= self.cfg.warmup:
            self._fit()

    def _fit(self) -> None:
        from sklearn.svm import OneClassSVM

        if len(self.hit_ids) < 2:
            self.inlier = np.ones(len(self.embeddings), dtype=bool)
            return
        ids = np.asarray(self.hit_ids)
        if len(ids) > self.max_training:
            ids = np.random.default_rng(self.seed).choice(ids, self.max_training, replace=False)
        model = OneClassSVM(kernel="rbf", gamma="scale", nu=self.cfg.nu)
        model.fit(self.embeddings[ids])
        self.inlier = model.decision_function(self.embeddings) >= 0
        self.trained = True

    def stats(self) -> dict[str, float]:
        return {**super().stats(), "predictor_trained": float(self.trained)}


PREDICTORS: dict[str, type[Predictor]] = {
    "none": NoPredictor,
    "oracle": OraclePredictor,
    "model": ModelPredictor,
    "learned": LearnedPredictor,
    "ocsvm": OneClassSvmPredictor,
}


def build_predictor(
    cfg: PredictorConfig, prompt_ids: np.ndarray, embeddings: np.ndarray | None, seed: int
) -> Predictor:
    """The predictor named by ``cfg.kind``."""
    if cfg.kind not in PREDICTORS:
        raise ConfigError("predictor.kind", cfg.kind, "allowed: " + ", ".join(sorted(PREDICTORS)))
    return PREDICTORS[cfg.kind](cfg, prompt_ids, embeddings, seed)
