"""``env.payoff_normalization``: the learners see payoffs divided by their largest magnitude, so a game written in
other units learns as the game itself."""
from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from msgzoo.game_theory.suite import fraction_of_gain, persuasion_suite
from msgzoo.runtime.config_validation import ConfigError
from msgzoo.training.payoff_normalization import PayoffNormalization
from recipes import run_recipe as run

US = [[0.0, 3.0], [1.0, 2.0]]
UR = [[-0.5, 0.5], [0.25, -0.25]]
TINY = ["collector.total_frames=20480", "env.num_envs=512", "logger.backends=[csv]", "logger.log_interval=10",
        "warmup.frames=8192"]


def _in_other_units(sender: float, receiver: float) -> list[str]:
    """Overrides of a 2 x 2 game with its sender's payoffs times ``sender`` and its receiver's times ``receiver``."""
    us, ur = [[0.1, 0.9], [0.2, 0.7]], [[0.8, -0.6], [-0.3, 0.4]]
    return ["env.prior=[0.6,0.4]", f"env.sender_utility={[[sender * x for x in r] for r in us]}",
            f"env.receiver_utility={[[receiver * x for x in r] for r in ur]}"]


GAME = _in_other_units(1.0, 1.0)


def _batch(states, actions, us=US, ur=UR):
    us, ur = torch.tensor(us), torch.tensor(ur)
    s, a = torch.tensor(states), torch.tensor(actions)
    return TensorDict({"next": {"sender": {"reward": us[s, a][:, None]}, "receiver": {"reward": ur[s, a][:, None]},
                                "done": torch.zeros(len(s), 1, dtype=torch.bool)}}, [len(s)])


def test_each_agents_payoffs_are_divided_by_its_largest_magnitude_and_the_batch_is_left_as_collected():
    batch = _batch([0, 0, 1, 1], [0, 1, 0, 1])
    before = batch.clone()
    seen = PayoffNormalization(US, UR)(batch)
    # sender: / 3; receiver: / 0.5 (each its own scale)
    assert seen["next", "sender", "reward"].flatten().tolist() == pytest.approx([0.0, 1.0, 1 / 3, 2 / 3])
    assert seen["next", "receiver", "reward"].flatten().tolist() == pytest.approx([-1.0, 1.0, 0.5, -0.5])
    assert (batch == before).all()  # what the trainer logs keeps the game's units
    assert seen["next", "done"] is batch["next", "done"]  # every other entry is shared, not copied


def test_the_common_scale_keeps_the_ratio_of_the_agents_payoffs():
    norm = PayoffNormalization(US, UR, common=True)
    assert norm.scales == {"sender": 3.0, "receiver": 3.0}  # the largest magnitude over both matrices
    seen = norm(_batch([0, 1], [1, 0]))
    assert seen["next", "sender", "reward"].flatten().tolist() == pytest.approx([1.0, 1 / 3])
    assert seen["next", "receiver", "reward"].flatten().tolist() == pytest.approx([0.5 / 3, 0.25 / 3])


def test_an_all_zero_payoff_matrix_is_left_as_it_is():
    seen = PayoffNormalization([[0.0, 0.0]], [[0.0, -2.0]])(_batch([0], [1], [[0.0, 0.0]], [[0.0, -2.0]]))
    assert seen["next", "sender", "reward"].item() == 0.0 and seen["next", "receiver", "reward"].item() == -1.0


@pytest.mark.parametrize("weight, common", [(0.0, False), (0.5, True)])
def test_a_prosocial_sender_always_gets_the_common_scale(recipe_config, weight, common):
    """A prosocial objective weighs both payoffs in the game's units: separate scales would change it."""
    from msgzoo.pipelines.one_step import make_env, make_payoff_normalization

    cfg = recipe_config("sgoc_recommendation_letter", *GAME, f"sender_objective.receiver_weight={weight}",
                        "env.payoff_normalization=per_agent")
    norm = make_payoff_normalization(cfg, make_env(cfg, num_envs=4))
    assert norm.scales == pytest.approx({"sender": 0.9, "receiver": 0.9 if common else 0.8})
    cfg = recipe_config("sgoc_recommendation_letter", *GAME, "env.payoff_normalization=none")
    assert make_payoff_normalization(cfg, make_env(cfg, num_envs=4)) is None


def _trained_scheme(recipe_config, tmp_path, *overrides):
    cfg = recipe_config("sgoc_recommendation_letter", *TINY, *overrides, f"+run_dir={tmp_path}")
    return torch.tensor(run(cfg, method="sgoc")["scheme"])


def test_a_game_in_other_units_trains_as_the_game_itself(recipe_config, tmp_path):
    """Both agents' payoffs x100: the same game; with the default the same run (up to float rounding)."""
    base = _trained_scheme(recipe_config, tmp_path / "a", *GAME)
    other = _trained_scheme(recipe_config, tmp_path / "b", *_in_other_units(100.0, 100.0))
    assert torch.allclose(base, other, atol=1e-4), (base, other)
    # without it the learners read the units: the runs part (what the option is for)
    raw = [_trained_scheme(recipe_config, tmp_path / k, *game, "env.payoff_normalization=none")
           for k, game in (("c", GAME), ("d", _in_other_units(100.0, 100.0)))]
    assert (raw[0] - raw[1]).abs().max() > 0.01  # 100x the tolerance above


def test_per_agent_units_also_undo_a_different_change_of_units_for_each_agent(recipe_config, tmp_path):
    """Sender's payoffs x100, receiver's x0.01: per_agent trains it as the game itself; the common scale cannot (the
    ratio of the agents' payoffs, which sets how large lambda must be, is the game's)."""
    base = _trained_scheme(recipe_config, tmp_path / "a", *GAME, "env.payoff_normalization=per_agent")
    other = _trained_scheme(recipe_config, tmp_path / "b", *_in_other_units(100.0, 0.01),
                            "env.payoff_normalization=per_agent")
    assert torch.allclose(base, other, atol=1e-4), (base, other)
    common = _trained_scheme(recipe_config, tmp_path / "c", *_in_other_units(100.0, 0.01))
    assert (common - _trained_scheme(recipe_config, tmp_path / "d", *GAME)).abs().max() > 0.01


def test_the_papers_protocol_learns_from_the_raw_payoffs(recipe_config):
    assert recipe_config("sgoc_recommendation_letter").env.payoff_normalization == "common"
    assert recipe_config("sgoc_recommendation_letter", "+protocol=paper").env.payoff_normalization == "none"


def test_a_bad_value_fails_naming_the_field(recipe_config, tmp_path):
    cfg = recipe_config("sgoc_recommendation_letter", *TINY, "env.payoff_normalization=range", f"+run_dir={tmp_path}")
    with pytest.raises(ConfigError, match="env.payoff_normalization='range' is invalid: expected one of"):
        run(cfg, method="sgoc")


def test_a_suite_game_in_other_units_keeps_its_fractions():
    game = {g.name: g for g in persuasion_suite(4)}["seller_buyer"]
    other = game.with_payoffs_transformed(sender=(10.0, 3.0), receiver=(0.5, -2.0))
    assert other.lp_value == pytest.approx(10 * game.lp_value + 3)
    assert other.no_info_value == pytest.approx(10 * game.no_info_value + 3)
    v = 0.3 * game.lp_value + 0.7 * game.no_info_value
    assert fraction_of_gain(10 * v + 3, other) == pytest.approx(fraction_of_gain(v, game))
    with pytest.raises(ValueError, match="receiver payoff scale"):
        game.with_payoffs_transformed(receiver=(0.0, 1.0))
    markov = next(g for g in persuasion_suite(0) if g.horizon > 1)
    with pytest.raises(ValueError, match="one-step games only"):
        markov.with_payoffs_transformed(sender=(2.0, 0.0))


def test_a_game_whose_largest_payoff_is_1_trains_exactly_as_with_raw_payoffs(recipe_config, tmp_path):
    """The Recommendation Letter's largest |u| is 1: the default divides by 1, so its results are the raw-payoff runs'."""
    normalized = _trained_scheme(recipe_config, tmp_path / "a")
    raw = _trained_scheme(recipe_config, tmp_path / "b", "env.payoff_normalization=none")
    assert torch.equal(normalized, raw)


def _penalty_warnings(recipe_config, *overrides, method="sgoc"):
    import warnings

    from msgzoo.pipelines.one_step import make_env, make_payoff_normalization, warn_if_penalty_is_weak

    cfg = recipe_config("sgoc_recommendation_letter", *overrides)
    env = make_env(cfg, num_envs=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_penalty_is_weak(cfg, env, make_payoff_normalization(cfg, env), method)
    return [str(w.message) for w in caught]


def test_a_penalty_far_below_the_games_threshold_warns_and_names_the_fix(recipe_config):
    """Sender's payoffs 100x the receiver's: the common scale keeps lambda* 100x too (the suite's x10 / x0.1 screen:
    no game learns); the warning names both fixes, and per_agent's lambda* is the game's own."""
    assert _penalty_warnings(recipe_config, *GAME) == []
    other_units = _in_other_units(10.0, 0.1)
    [message] = _penalty_warnings(recipe_config, *other_units)
    assert "loss.lagrange_multiplier=5 is below 1/4 of this game's exact-penalty threshold" in message
    assert "env.payoff_normalization=per_agent" in message
    assert _penalty_warnings(recipe_config, *other_units, "env.payoff_normalization=per_agent") == []
    assert _penalty_warnings(recipe_config, *other_units, "loss.lagrange_multiplier=1000") == []
    assert _penalty_warnings(recipe_config, *other_units, "loss.obedience_mode=dual") == []  # a learned multiplier
    assert _penalty_warnings(recipe_config, *other_units, method="pg") == []  # no obedience loss: lambda unused
    assert _penalty_warnings(recipe_config, *other_units, "sender_objective.receiver_weight=0.5") == []  # not eq. 1's
    assert len(_penalty_warnings(recipe_config, *other_units, method="pgoc")) == 1


def test_the_suites_one_game_with_lambda_star_above_four_lambda_warns(recipe_config):
    game = {g.name: g for g in persuasion_suite(40)}["random_17_3x3"]
    [message] = _penalty_warnings(recipe_config, *game.overrides())
    assert "lambda* = 23.3" in message and "per_agent" not in message  # its agents share units: per_agent won't help
