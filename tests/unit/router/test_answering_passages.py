from services.worker.knowledge.index import Hit
from services.worker.router.router import answering_passages

LEXICAL_WEIGHT = 0.1
THRESHOLD = 0.86


def relevant(hit: Hit) -> bool:
    # the router's rule: cosine plus weighted lexical coverage reaches the threshold
    return hit.dense + LEXICAL_WEIGHT * hit.lexical >= THRESHOLD


def answers(hit: Hit) -> bool:
    # the same, with lexical coverage adding at most 0.01
    return hit.dense + min(LEXICAL_WEIGHT * hit.lexical, 0.01) >= THRESHOLD


def hit(position: int, dense: float, lexical: float) -> Hit:
    # the index's ranking score: the cosine plus a small weight on squared coverage
    return Hit(position, dense + 0.05 * lexical**2, dense, lexical)


def test_a_lower_passage_lifted_over_the_threshold_by_shared_words_alone_does_not_answer() -> None:
    closest = hit(0, dense=0.843, lexical=0.0)  # best ranked, not relevant
    shares_a_name = hit(1, dense=0.830, lexical=0.31)  # 0.861 of evidence: passes on its own
    ranked = sorted([shares_a_name, closest], key=lambda h: h.score, reverse=True)
    assert ranked[0] is closest and relevant(shares_a_name)
    assert answering_passages(ranked, answers, relevant) == []


def test_when_the_best_passage_is_relevant_every_relevant_passage_answers_in_rank_order() -> None:
    best = hit(0, dense=0.90, lexical=0.2)
    weak = hit(1, dense=0.85, lexical=0.0)
    runner_up = hit(2, dense=0.84, lexical=0.3)
    assert answering_passages([best, weak, runner_up], answers, relevant) == [best, runner_up]


def test_a_best_passage_lifted_over_the_threshold_by_shared_words_alone_does_not_answer() -> None:
    shares_a_name = hit(0, dense=0.835, lexical=0.39)  # "can I wear the buds air swimming?"
    runner_up = hit(1, dense=0.83, lexical=0.31)
    assert relevant(shares_a_name) and not answers(shares_a_name)
    assert answering_passages([shares_a_name, runner_up], answers, relevant) == []
    # a passage near the threshold by meaning still gets the help of its words
    near = hit(0, dense=0.852, lexical=0.2)
    assert answering_passages([near, runner_up], answers, relevant) == [near, runner_up]


def test_no_passages_none_answer() -> None:
    assert answering_passages([], answers, relevant) == []
