"""Many seeds in one process: every seed stays independent of the others.

The reference for seed k is the same method built alone after ``torch.manual_seed(k)`` (what a separate run does):
its initial parameters, and its losses and gradients on seed k's slice of a batch, must equal seed k's part of the
multi-seed computation.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from msgzoo.modules import GridNet, ObservationMessageNet, VectorNet
from msgzoo.modules.seed_ensemble import SeedEnsemble, _MethodCall, seed_members
from msgzoo.objectives import attach_next_message
from msgzoo.pipelines import one_step, reaching_goals
from recipes import build_method

SEEDS = (3, 5, 8)


def _tasks(recipe_config, method: str):
    """(config, make_env) pairs: Reaching Goals 3x3 and Recommendation Letter, tiny."""
    rg = recipe_config("reaching_goals", "env.num_envs=4", "dial.noise_std=0.0")
    rl = recipe_config("recommendation_letter", "env.num_envs=6", "dial.noise_std=0.0")
    out = [(rg, reaching_goals.make_env, 3)]
    if method != "dial":
        out.append((rl, one_step.make_env, 1))
    return out


def _single(method, cfg, make_env, seed):
    torch.manual_seed(seed)
    return build_method(method, make_env(cfg), cfg)


def _multi(method, cfg, make_env):
    env = make_env(cfg, num_seeds=len(SEEDS))
    return env, build_method(method, env, cfg, seeds=SEEDS)


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.named_parameters())


def _loss_groups(m):
    """(name, loss modules, the optimizer whose parameters they train) of each update phase."""
    return [(p.name, list(p.losses.values()), m.optimizers[p.name]) for p in m.phases]


def _total(losses, td):
    total = 0.0
    for loss in losses:
        out = loss(td)
        total = total + sum(v for k, v in out.items() if k.startswith("loss_"))
    return total


@pytest.mark.parametrize("method", ["sgoc", "sg", "pgoc", "pg", "dial"])
def test_members_start_as_separate_runs(recipe_config, method):
    for cfg, make_env, _ in _tasks(recipe_config, method):
        _, multi = _multi(method, cfg, make_env)
        for i, seed in enumerate(SEEDS):
            single = _single(method, cfg, make_env, seed)
            member = multi.member(i)
            for part in ("scheme", "receiver"):
                ours = [p for _, p in sorted(_params(getattr(member, part)).items())]
                theirs = [p for _, p in sorted(_params(getattr(single, part)).items())]
                assert len(ours) == len(theirs) > 0
                for a, b in zip(ours, theirs):
                    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["sgoc", "sg", "pgoc", "pg", "dial"])
def test_losses_and_gradients_equal_separate_runs(recipe_config, method):
    """The multi-seed total, backpropagated as it is (the losses reduce per seed), gives every seed the gradients of
    that seed's separate computation on its slice of the batch, and is the sum of the seeds' losses."""
    for base_cfg, make_env, steps in _tasks(recipe_config, method):
        cfg = base_cfg.copy()
        cfg.loss.counterfactual = "all"  # deterministic estimator (uniform draws a random sigma')
        env, multi = _multi(method, cfg, make_env)
        torch.manual_seed(0)
        batch = env.rollout(steps, multi.policy, break_when_any_done=False)  # [seeds, envs, steps]
        assert batch.batch_size[:2] == (len(SEEDS), env.batch_size[1])
        if method != "dial":
            attach_next_message(batch, multi.scheme)
        if multi.reward_mix is not None:  # the defaults' warm-up: the sender learns from the mixed reward
            multi.reward_mix.write(batch, frames=0)
        singles = [_single(method, cfg, make_env, seed) for seed in SEEDS]
        for phase, losses, opt in _loss_groups(multi):
            opt.zero_grad(set_to_none=True)
            total = _total(losses, batch.clone())
            total.backward()
            stacked = [p for group in opt.param_groups for p in group["params"]]
            per_seed_losses = []
            for i, single in enumerate(singles):
                _, s_losses, s_opt = next(g for g in _loss_groups(single) if g[0] == phase)
                s_opt.zero_grad(set_to_none=True)
                s_total = _total(s_losses, batch[i].clone())
                s_total.backward()
                per_seed_losses.append(s_total.detach())
                s_params = [p for group in s_opt.param_groups for p in group["params"]]
                assert len(s_params) == len(stacked)
                for p, q in zip(stacked, s_params):
                    assert p.shape[1:] == q.shape
                    grad = torch.zeros_like(q) if p.grad is None else p.grad[i]
                    theirs = torch.zeros_like(q) if q.grad is None else q.grad
                    torch.testing.assert_close(grad, theirs, rtol=1e-4, atol=1e-6, msg=f"{method} {phase} seed {i}")
            torch.testing.assert_close(total.detach(), torch.stack(per_seed_losses).sum(), rtol=1e-4, atol=1e-6)


def test_dual_multipliers_are_per_seed(recipe_config):
    cfg = recipe_config("recommendation_letter", "env.num_envs=6", "loss.obedience_mode=dual", "loss.counterfactual=all")
    env, multi = _multi("sgoc", cfg, one_step.make_env)
    batch = env.rollout(1, multi.policy)
    loss = multi.sender_losses["obedience"]
    assert loss.lagrange_multiplier.shape == (len(SEEDS), env.num_messages)
    loss.update_multipliers(loss(batch))
    assert not torch.equal(loss.lagrange_multiplier, torch.full_like(loss.lagrange_multiplier, cfg.loss.lagrange_multiplier))
    for i, seed in enumerate(SEEDS):
        single = _single("sgoc", cfg, one_step.make_env, seed).sender_losses["obedience"]
        single.update_multipliers(single(batch[i]))
        torch.testing.assert_close(loss.lagrange_multiplier[i], single.lagrange_multiplier)


def test_ensemble_rows_are_the_members(recipe_config):
    nets = [ObservationMessageNet(GridNet(2, 3, 3, 4), grid_shape=(3, 3)) for _ in range(3)]
    ensemble = SeedEnsemble(nets)
    obs = torch.randn(3, 5, 1, 3, 3)
    msg = torch.nn.functional.one_hot(torch.randint(9, (3, 5)), 9).float()
    out = ensemble(obs, msg)
    all_messages = ensemble.forward_all_messages(obs, 9)
    for i, net in enumerate(nets):
        torch.testing.assert_close(out[i], net(obs[i], msg[i]))
        torch.testing.assert_close(all_messages[i], net.forward_all_messages(obs[i], 9))
        torch.testing.assert_close(ensemble.member(i)(obs[i], msg[i]), net(obs[i], msg[i]))
    # a member is a copy: training the ensemble further leaves it as it was
    member = seed_members(nn.Sequential(ensemble), 1)
    before = member[0](obs[1], msg[1])
    with torch.no_grad():
        for p in ensemble.parameters():
            p.add_(1.0)
    torch.testing.assert_close(member[0](obs[1], msg[1]), before)


def test_ensemble_errors():
    with pytest.raises(ValueError, match="at least one"):
        SeedEnsemble([])
    with pytest.raises(ValueError, match="architecture"):
        SeedEnsemble([VectorNet(2, 2), VectorNet(3, 2)])
    ensemble = SeedEnsemble([VectorNet(2, 2), VectorNet(2, 2)])
    with pytest.raises(ValueError, match="seed dimension first"):
        ensemble(torch.randn(5, 2))
    with pytest.raises(IndexError):
        ensemble.member(2)


def test_build_method_checks_the_env_batch(recipe_config):
    cfg = recipe_config("recommendation_letter", "env.num_envs=6")
    with pytest.raises(ValueError, match="batch_size"):
        build_method("sgoc", one_step.make_env(cfg), cfg, seeds=SEEDS)
    with pytest.raises(ValueError, match="distinct"):
        build_method("sgoc", one_step.make_env(cfg, num_seeds=2), cfg, seeds=[1, 1])


def test_budgets_and_schedules_count_each_seeds_own_steps(recipe_config, tmp_path):
    """The trainer's budget, batch size and frame count are per seed: 3 seeds given N frames per seed collect the
    batches a single run of N collects, and DIAL's epsilon anneals over each seed's env steps, as in a separate run
    (not over all seeds' steps)."""
    from msgzoo.runtime.experiment import Experiment
    from msgzoo.training.trainer import Trainer

    eps, counts = {}, {}
    for num_seeds in (1, 3):
        cfg = recipe_config("dial_reaching_goals", "env.num_envs=8", f"num_seeds={num_seeds}", "logger.backends=[csv]",
                            "dial.annealing_frames=1000")
        env = reaching_goals.make_env(cfg, num_seeds=num_seeds)
        seeds = list(range(num_seeds)) if num_seeds > 1 else None
        method = build_method("dial", env, cfg, seeds=seeds)
        exp = Experiment(method="dial", task="reaching_goals", seed=0, config=cfg, run_dir=tmp_path / str(num_seeds),
                         backends=("csv",), num_seeds=num_seeds)
        per_batch = 8 * 4  # 8 envs per seed, 4 steps
        trainer = Trainer(env, method, exp, total_frames=5 * per_batch, frames_per_batch=per_batch, log_interval=2,
                          seed_experiments=exp.seed_runs(cfg, "dial") if seeds else None)
        trainer.train()
        exp.close()
        eps[num_seeds] = float(method.exploration.eps)
        counts[num_seeds] = (trainer.iteration, trainer.frames, [row["frames"] for row in trainer.history])
        if seeds:  # each seed's own log is on the same per-seed env-step axis
            assert [[row["frames"] for row in h] for h in trainer.seed_history] == [counts[num_seeds][2]] * num_seeds
    assert counts[3] == counts[1] == (5, 5 * per_batch, [64, 128, 160])
    assert eps[3] == pytest.approx(eps[1]) and eps[1] < 1.0


def _vmap_reference(nets, name: str, *args):
    """What SeedEnsemble computes where a member has no every-seed path: ``torch.vmap`` of ``functional_call``."""
    from torch.func import functional_call, stack_module_state

    params, _ = stack_module_state(nets)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    caller = _MethodCall(nets[0])
    dims = tuple(0 if isinstance(a, torch.Tensor) else None for a in args)
    call = lambda p, *xs: functional_call(caller, {f"base.{k}": v for k, v in p.items()}, (name, *xs))  # noqa: E731
    return params, torch.vmap(call, in_dims=(0, *dims))(params, *args)


@pytest.mark.parametrize(
    "make, name, args, fast",
    [
        (lambda: VectorNet(3, 4, bias=False), "forward", lambda: (torch.randn(3, 6, 3),), True),
        (lambda: VectorNet(3, 4, hidden=(8, 5)), "forward", lambda: (torch.randn(3, 2, 6, 3),), True),
        (lambda: ObservationMessageNet(VectorNet(4, 2, bias=False)), "forward",
         lambda: (torch.randn(3, 6, 1), torch.eye(3)[torch.randint(3, (3, 6))]), True),
        (lambda: ObservationMessageNet(VectorNet(4, 2, bias=False)), "forward_all_messages",
         lambda: (torch.randn(3, 6, 1), 3), True),
        (lambda: ObservationMessageNet(VectorNet(3, 2, bias=False)), "forward_all_messages",  # no observation
         lambda: (torch.randn(3, 6, 0), 3), True),
        (lambda: GridNet(2, 3, 3, 4), "forward", lambda: (torch.randn(3, 5, 2, 2, 3, 3),), True),
        (lambda: ObservationMessageNet(GridNet(2, 3, 3, 4), grid_shape=(3, 3)), "forward",
         lambda: (torch.randn(3, 5, 1, 3, 3), torch.eye(9)[torch.randint(9, (3, 5))]), True),
        (lambda: ObservationMessageNet(GridNet(2, 3, 3, 4), grid_shape=(3, 3)), "forward_all_messages",
         lambda: (torch.randn(3, 2, 5, 1, 3, 3), 9), True),
        (lambda: ObservationMessageNet(GridNet(1, 3, 3, 4), grid_shape=(3, 3)), "forward_all_messages",  # message only
         lambda: (torch.randn(3, 5, 0, 3, 3), 9), True),
        # behind a hidden layer vmap rounds differently: the member declines (None) and vmap runs
        (lambda: ObservationMessageNet(VectorNet(5, 4, hidden=(8,))), "forward_all_messages",
         lambda: (torch.randn(3, 2, 6, 2), 3), False),
    ],
)
def test_every_seed_paths_equal_vmap_bit_for_bit(make, name, args, fast):
    """The ``*_stacked`` paths of VectorNet, GridNet and ObservationMessageNet (one bmm per layer) give what vmap
    gives, outputs and gradients exactly, so the speed-up changes no run's numbers."""
    torch.manual_seed(0)
    nets = [make() for _ in range(3)]
    inputs = args()
    params, expected = _vmap_reference(nets, name, *inputs)
    ensemble = SeedEnsemble(nets)
    stacked = {k: getattr(ensemble, k.replace(".", "__")) for k in params}
    assert (getattr(ensemble.base, f"{name}_stacked")(stacked, *inputs) is not None) == fast
    out = getattr(ensemble, name)(*inputs)
    assert out.shape == expected.shape and torch.equal(out, expected)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), list(stacked.values()))
    expected_grads = torch.autograd.grad((expected * weights).sum(), list(params.values()))
    assert all(torch.equal(g, e) for g, e in zip(grads, expected_grads))
