"""The data path Collector -> ReplayBuffer (LazyTensorStorage + SamplerWithoutReplacement) -> minibatch updates.

With one epoch and one minibatch, an update phase equals the update on the whole collected batch (what the trainer
did before the buffer): the reference below is that update written out. More epochs or minibatches take more
optimizer steps, each on a share of every seed's environments, drawn without replacement.
"""
from __future__ import annotations

import pytest
import torch
from tensordict.utils import unravel_key

from msgzoo.pipelines import one_step, reaching_goals
from msgzoo.runtime.config_validation import ConfigError, check_resume_config, validate_config
from msgzoo.runtime.experiment import Experiment
from recipes import build_method, run_recipe
from msgzoo.training.trainer import Trainer

SEEDS = (3, 5, 8)


def _setup(recipe_config, method, task, seeds, tmp_path, **trainer_kwargs):
    if task == "reaching_goals":
        cfg = recipe_config(f"{method}_reaching_goals", "env.num_envs=8")
        make_env, steps = reaching_goals.make_env, 3
    else:  # the defaults' warm-up is on: the sender's phase writes its mixed reward first
        cfg = recipe_config(f"{method}_recommendation_letter", "env.num_envs=16")
        make_env, steps = one_step.make_env, 1
    env = make_env(cfg, num_seeds=len(seeds) if seeds else 1, seed=0)
    torch.manual_seed(0)
    m = build_method(method, env, cfg, seeds=seeds)
    exp, *runs = [Experiment(method=method, task=task, seed=s, config={}, backends=("csv",), run_dir=tmp_path / f"run{s}")
                  for s in (0, *(seeds or ()))]
    per_seed = env.batch_size[-1] * steps  # the trainer counts each seed's env steps
    trainer = Trainer(env, m, exp, total_frames=per_seed, frames_per_batch=per_seed,
                      seed_experiments=runs, **trainer_kwargs)
    return env, m, trainer, steps


def _reference_update(m, phase, batch, max_grad=1.0):
    """The update on the whole batch, as the trainer took it before the replay buffer (the losses reduce per seed:
    the total is backpropagated as it is)."""
    if phase.prepare is not None:
        phase.prepare(batch, 0)
    total = 0.0
    for name, loss in phase.losses.items():
        out = loss(batch)
        if name in phase.after_loss:
            phase.after_loss[name](out)
        total = total + sum(v for k, v in out.items() if k.startswith("loss_"))
    opt = m.optimizers[phase.name]
    opt.zero_grad(set_to_none=True)
    total.backward()
    for group in opt.param_groups:
        torch.nn.utils.clip_grad_value_(group["params"], max_grad)
    opt.step()
    for hook in phase.after_step:
        hook()
    if phase.after_batch is not None:
        phase.after_batch(batch.batch_size[-2:].numel())  # each seed's env steps: [*seeds, envs, T]


@pytest.mark.parametrize("seeds", [None, SEEDS], ids=["one_seed", "three_seeds"])
@pytest.mark.parametrize("method, task", [("sgoc", "recommendation_letter"), ("pgoc", "reaching_goals"),
                                          ("dial", "reaching_goals")])
def test_one_epoch_one_minibatch_is_the_update_on_the_batch(recipe_config, tmp_path, method, task, seeds):
    env, ours, trainer, steps = _setup(recipe_config, method, task, seeds, tmp_path / "a")
    _, theirs, _, _ = _setup(recipe_config, method, task, seeds, tmp_path / "b")
    torch.manual_seed(1)
    batch = env.rollout(steps, ours.policy, break_when_any_done=False)
    for i, (phase, ref_phase) in enumerate(zip(ours.phases, theirs.phases)):
        trainer.iteration = i
        mine, ref = batch.clone(), batch.clone()
        torch.manual_seed(10 + i)  # the losses' own random draws (Gumbel noise, counterfactual messages)
        trainer.update_phase(phase, mine, {})
        torch.manual_seed(10 + i)
        _reference_update(theirs, ref_phase, ref)
    for name, module in ours.modules().items():
        for (key, a), b in zip(module.state_dict().items(), theirs.modules()[name].state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=f"{method} {name}.{key}")
    for name, opt in ours.optimizers.items():
        assert [s["step"] for s in opt.state.values()] == [s["step"] for s in theirs.optimizers[name].state.values()]


def test_minibatches_split_every_seeds_environments_without_replacement(recipe_config, tmp_path):
    env, m, trainer, steps = _setup(recipe_config, "pgoc", "reaching_goals", SEEDS, tmp_path, epochs=2, minibatches=4)
    batch = env.rollout(steps, m.policy, break_when_any_done=False)  # [seeds, 8 envs, steps]
    batch.set("row", torch.arange(8).view(1, 8, 1).expand(*batch.batch_size).clone())
    trainer.buffer_keys.append("row")  # read below, declared by no loss
    seen, step = [], trainer._step
    trainer._step = lambda phase, minibatch, metrics: seen.append(minibatch["row"]) or step(phase, minibatch, metrics)
    trainer.update_phase(m.phases[1], batch, {})  # the sender's phase
    assert len(seen) == 2 * 4 and all(rows.shape == (3, 2, steps) for rows in seen)
    for epoch in (seen[:4], seen[4:]):
        rows = torch.cat(epoch, dim=1)  # [seeds, 8, steps]
        assert (rows == rows[:1, :, :1]).all()  # one environment per row: all its steps, the same for every seed
        assert sorted(rows[0, :, 0].tolist()) == list(range(8))  # every environment once per epoch
    sender_steps = {int(s["step"]) for s in m.optimizers["sender"].state.values()}
    assert sender_steps == {8}  # one Adam step per minibatch


def test_minibatches_must_divide_the_environments(recipe_config, tmp_path):
    cfg = recipe_config("sgoc_reaching_goals", "env.num_envs=32", "optim.minibatches=3")
    with pytest.raises(ConfigError, match=r"optim.minibatches=3 .*divisor of env.num_envs=32"):
        validate_config(cfg, method="sgoc")
    with pytest.raises(ConfigError, match=r"optim.epochs=0"):
        validate_config(recipe_config("sgoc_recommendation_letter", "optim.epochs=0"), method="sgoc")
    with pytest.raises(ValueError, match=r"optim.minibatches=3 does not divide the 16 environments"):
        _setup(recipe_config, "sg", "recommendation_letter", None, tmp_path, minibatches=3)


def test_checkpoints_made_before_the_fields_resume_with_one_epoch_one_minibatch():
    old = {"optim": {"signaling_lr": 0.02}, "seed": 0}
    check_resume_config(old, {"optim": {"signaling_lr": 0.02, "epochs": 1, "minibatches": 1}, "seed": 0})
    with pytest.raises(ConfigError, match="optim.minibatches: checkpoint 1, now 2"):
        check_resume_config(old, {"optim": {"signaling_lr": 0.02, "epochs": 1, "minibatches": 2}, "seed": 0})


def test_a_resumed_minibatch_run_continues_exactly(recipe_config, tmp_path):
    """Each batch draws its permutations afresh: a run resumed from its checkpoint equals the uninterrupted one."""
    common = ["env.num_envs=64", "logger.backends=[csv]", "logger.log_interval=2", "optim.epochs=2",
              "optim.minibatches=4", "seed=4"]
    full = run_recipe(recipe_config("sgoc_recommendation_letter", *common, "collector.total_frames=1280",
                                      f"+run_dir={tmp_path / 'full'}"), method="sgoc")
    run_recipe(recipe_config("sgoc_recommendation_letter", *common, "collector.total_frames=640",
                               f"+run_dir={tmp_path / 'half'}"), method="sgoc")
    resumed = run_recipe(recipe_config("sgoc_recommendation_letter", *common, "collector.total_frames=1280",
                                         f"+run_dir={tmp_path / 'resumed'}",
                                         f"resume={tmp_path / 'half' / 'checkpoint.pt'}"), method="sgoc")
    for key in ("sender_reward", "receiver_reward", "scheme", "policy", "env_steps"):
        assert resumed[key] == full[key], key


@pytest.mark.parametrize("method, task", [("sgoc", "recommendation_letter"), ("pgoc", "reaching_goals")])
def test_the_buffer_stores_the_keys_the_losses_read(recipe_config, tmp_path, method, task):
    env, m, trainer, steps = _setup(recipe_config, method, task, SEEDS, tmp_path)
    declared = {unravel_key(k) for phase in m.phases for loss in phase.losses.values() for k in loss.in_keys}
    assert {unravel_key(k) for k in trainer.buffer_keys} == declared
    batch = env.rollout(steps, m.policy, break_when_any_done=False)
    batch.set("unread", torch.zeros(batch.batch_size))
    for phase in m.phases:
        seen, step = [], trainer._step
        trainer._step = lambda phase, minibatch, metrics: seen.append(minibatch) or step(phase, minibatch, metrics)
        trainer.update_phase(phase, batch, {})  # its preparation writes into batch what its losses read
        trainer._step = step
        stored = set(seen[0].keys(True, True))
        assert stored == declared & set(batch.keys(True, True))  # all the losses read that the batch has, nothing else
        assert "unread" not in stored and ("collector", "traj_ids") not in stored
