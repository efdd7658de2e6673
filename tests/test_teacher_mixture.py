"""examples/toy/teacher_mixture.py: the perplexities of mixed soft labels."""
import math

import torch
from helpers import load_example


def _module():
    module = load_example("examples/toy/teacher_mixture.py", "teacher_mixture")
    return module


def test_mixture_perplexities_of_two_known_distributions():
    mixture = _module()
    targets = torch.tensor([0, 1])
    # the teacher puts 1/2 on the target, the fallback 1/4 (vocabulary of 4)
    teacher = torch.log(torch.tensor([[0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3], [0.5 / 3, 0.5, 0.5 / 3, 0.5 / 3]]))
    fallback = torch.log(torch.full((2, 4), 0.25))
    scores = mixture.mixture_perplexities(teacher, fallback, targets)
    assert math.isclose(scores["teacher only"], 2.0, rel_tol=1e-5)
    assert math.isclose(scores["fallback only"], 4.0, rel_tol=1e-5)
    assert math.isclose(scores["w = 0.5"], 1 / 0.375, rel_tol=1e-5)  # p(target) = (0.5 + 0.25) / 2
    geometric = math.sqrt(0.5 * 0.25) / (math.sqrt(0.5 * 0.25) + 3 * math.sqrt(0.5 / 3 * 0.25))
    assert math.isclose(scores["geometric"], 1 / geometric, rel_tol=1e-5)
    assert scores["w = 0.25"] > scores["w = 0.5"] > scores["w = 0.75"]


def test_ensemble_perplexity_is_that_of_the_mean_probability():
    mixture = _module()
    targets = torch.tensor([0, 0])
    # two members put 1/2 and 1/8 on the target: the ensemble 5/16, between them and not their geometric mean
    first = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    second = torch.log(torch.tensor([[0.125, 0.5, 0.375], [0.125, 0.5, 0.375]]))
    scores = mixture.ensemble_perplexities(first, [first, second], targets)
    assert math.isclose(scores["fallback only"], 2.0, rel_tol=1e-5)
    assert math.isclose(scores["ensemble of 2"], 16 / 5, rel_tol=1e-5)
