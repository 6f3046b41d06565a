"""``warmup.receiver_entropy_coeff``: the receiver's entropy bonus moves linearly to ``loss.receiver_entropy_coeff``
over the warm-up (a receiver that explores while the messages gain meaning, and stops mixing afterwards)."""
import pytest

from msgzoo.pipelines import one_step
from msgzoo.training.config_schema import ConfigError
from msgzoo.runtime.experiment import Experiment
from msgzoo.training.methods import LinearSchedule, schedule_over_warmup
from recipes import build_method
from msgzoo.training.trainer import Trainer


def _train_and_record(cfg, method_name, tmp_path):
    env = one_step.make_env(cfg)
    method = build_method(method_name, env, cfg)
    loss, seen = method.receiver_loss, []
    forward = loss.forward
    loss.forward = lambda td: seen.append((float(loss.entropy_coeff), forward(td))) or seen[-1][1]
    exp = Experiment(method=method_name, task="t", seed=0, config={}, backends=("csv",), run_dir=tmp_path / "run")
    with exp:
        Trainer(env, method, exp, total_frames=128, frames_per_batch=32, log_interval=2).train()
    return seen


@pytest.mark.parametrize("start", [0.1, 0.0])
@pytest.mark.parametrize("method", ["sgoc", "pg"])
def test_the_receivers_bonus_moves_on_its_env_steps(recipe_config, tmp_path, method, start):
    """``start`` at the start, 0.02 at the warm-up's end (96 students): the receiver's updates (batches 1 and 3, after
    0 and 64 students) see ``start`` and ``start + (0.02 - start) * 64 / 96``, and the bonus is in their loss. From
    0 (``warmup.receiver_entropy_coeff``'s default) too: TorchRL's A2C drops the bonus term of a loss built with a zero
    coefficient, which once left ``loss.receiver_entropy_coeff`` without effect."""
    cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=32", "collector.total_frames=128",
                        "warmup.frames=96", f"warmup.receiver_entropy_coeff={start}",
                        "loss.receiver_entropy_coeff=0.02")
    seen = _train_and_record(cfg, method, tmp_path)
    assert [c for c, _ in seen] == pytest.approx([start, start + (0.02 - start) * 64 / 96])
    for coeff, out in seen:
        assert float(out["loss_entropy"].detach()) == pytest.approx(-coeff * float(out["entropy"].detach()), rel=1e-5)


def test_equal_values_are_a_constant_and_zero_has_no_entropy_term(recipe_config, tmp_path):
    cfg = recipe_config("sgoc_recommendation_letter", "env.num_envs=32", "collector.total_frames=64")
    assert schedule_over_warmup(cfg, "receiver_entropy_coeff") is None  # the defaults: 0 and 0
    seen = _train_and_record(cfg, "sgoc", tmp_path)
    assert all("loss_entropy" not in out.keys() for _, out in seen)
    cfg = recipe_config("sgoc_recommendation_letter", "warmup.frames=10", "warmup.receiver_entropy_coeff=0.05",
                        "loss.receiver_entropy_coeff=0.01", "collector.total_frames=100")
    assert schedule_over_warmup(cfg, "receiver_entropy_coeff") == LinearSchedule(0.05, 0.01, 10)


def test_a_negative_bonus_fails_naming_the_field(recipe_config):
    from msgzoo.runtime.config_validation import validate_config

    cfg = recipe_config("sgoc_recommendation_letter", "warmup.receiver_entropy_coeff=-0.1")
    with pytest.raises(ConfigError, match=r"warmup\.receiver_entropy_coeff"):
        validate_config(cfg, method="sgoc")
