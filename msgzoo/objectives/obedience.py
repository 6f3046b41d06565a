"""The extended obedience constraints (paper, Lemma 4.2, eq. 4, 6, 7) as a TorchRL loss module."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn

from msgzoo.modules.small_softmax import softmax
from msgzoo.objectives.common import (
    SenderCriticLoss,
    action_value_td_loss,
    check_ensemble_shape,
    check_reads,
    check_writes,
    critic_output,
    logits_module_of,
    memo_receiver_probs_all_messages,
    mix_with_recommendations,
    online_params,
    reduce_per_seed,
    scheme_logits,
)

MODES = ("lagrangian", "dual", "dual_pairwise", "stringent")
DUAL_MODES = ("dual", "dual_pairwise")  # multipliers moved by update_multipliers
COUNTERFACTUALS = ("uniform", "all")
MARGINS = ("joint", "posterior")
ALLOWANCES = ("fixed", "firing_rate")
# the range of the firing-rate allowance k (in standard errors): from a margin of 2 SE to an allowance of 3 SE
ALLOWANCE_RANGE = (-2.0, 3.0)


class ObedienceConstraintLoss(SenderCriticLoss):
    r"""Penalty that keeps the signaling scheme obeyable: the extended obedience constraints.

    Eq. 4 (Lemma 4.2) of Lin et al. (2023), for every pair of messages :math:`\sigma, \sigma'`:

    .. math::

        C(\sigma,\sigma') = \sum_s d(s)\,\varphi_\eta(\sigma|s,o)\sum_a
            \big(\pi_\theta(a|o,\sigma) - \pi_\theta(a|o,\sigma')\big) W^j(s,a) \;\ge\; \epsilon ,

    estimated on a batch of visited states as in eq. 6, with the gradient flowing through
    :math:`\varphi` only (:math:`\pi` and :math:`W^j` are detached):
    :math:`c_t = \varphi(\sigma_t|s_t,o_t)\sum_a(\pi(a|o_t,\sigma_t)-\pi(a|o_t,\sigma'_t))W^j(s_t,a)`.

    ``counterfactual="uniform"`` (the paper's estimator): :math:`\sigma_t` is the sent message and
    :math:`\sigma'_t` is drawn uniformly among the *other* messages (a draw equal to :math:`\sigma_t`
    would only add a zero term); :math:`\hat C = \frac1T\sum_t c_t`, one estimate for the batch.
    ``counterfactual="all"``: every pair, :math:`\hat C(\sigma,\sigma') = \frac1T\sum_t
    \varphi(\sigma|s_t,o_t)\sum_a(\pi(a|o_t,\sigma)-\pi(a|o_t,\sigma'))W^j(s_t,a)`, an unbiased estimate of
    eq. 4's left side for each pair (see :meth:`constraint_matrix`); the hinge applies to each pair.

    Modes (eq. 7 uses :math:`(\cdot)^- = \min(0, \cdot)`):

    - ``"lagrangian"`` (the paper's default, eq. 7): ``lambda * sum_pairs relu(epsilon - C_hat)`` with
      a fixed ``lambda``, active only while an estimate is below ``epsilon`` (one batch estimate with
      ``"uniform"``, one per ordered pair with ``"all"``).
    - ``"dual"``: one multiplier per message, :math:`-\sum_\sigma \lambda_\sigma(\hat C_\sigma - \epsilon)`
      with :math:`\hat C_\sigma` the batch estimate restricted to message :math:`\sigma`, and the
      multipliers updated by projected dual ascent
      :math:`\lambda_\sigma \leftarrow \max(0, \lambda_\sigma - \text{dual\_lr}(\hat C_\sigma - \epsilon))`
      by an explicit step, :meth:`update_multipliers`.
    - ``"dual_pairwise"`` (needs ``counterfactual="all"``): one multiplier per ordered pair of messages,
      :math:`-\sum_{\sigma\ne\sigma'} \lambda_{\sigma\sigma'}(\hat C(\sigma,\sigma') - \epsilon)`, updated by projected
      dual ascent :math:`\lambda_{\sigma\sigma'} \leftarrow \max(0, \lambda_{\sigma\sigma'} -
      \text{dual\_lr}(\hat C(\sigma,\sigma') - \epsilon))` by :meth:`update_multipliers`: the Lagrangian of eq. 5
      with every constraint of eq. 4 priced separately, so each multiplier settles at its constraint's shadow
      price instead of a hand-set penalty.

      In both dual modes ``forward`` returns the estimates the multipliers price as ``constraint_estimates`` (with
      their right-hand sides as ``constraint_bounds``) and never changes the multipliers itself (as TorchRL leaves
      target updates to ``SoftUpdate.step()``).
    - ``"stringent"``: a hinge per sample (or pair), ``lambda * mean(relu(epsilon - c_t))``.

    The critic :math:`W^j(s,\cdot)` (the receiver's marginal action value, learned by the sender from
    the receiver's rewards) is trained by TD(0) with an expected-SARSA target (see
    :func:`~msgzoo.objectives.common.action_value_td_loss`); update its target with ``SoftUpdate``;
    :meth:`make_value_estimator` gives it a TD(1) or TD(lambda) target instead.

    Trains (``loss.parameters()``): the scheme and the critic ``W^j``. The receiver is read, never trained,
    and its parameters are not among the loss's (nor are the multipliers, a buffer).

    Args:
        scheme_network, receiver_network, critic_network: as in
            :class:`~msgzoo.objectives.SignalingGradientLoss`; the critic estimates ``W^j``.

    Keyword Args:
        lagrange_multiplier (float): :math:`\lambda` (initial value in ``"dual"`` mode). Default 5.0.
        epsilon (float): right-hand side of the constraints (section 4.5.3). Default 0.0.
        mode (str): ``"lagrangian"``, ``"dual"`` or ``"stringent"``. Default ``"lagrangian"``.
        counterfactual (str): ``"uniform"`` or ``"all"``. Default ``"uniform"``.
        dual_lr (float): step of the dual ascent. Default 0.01.
        gamma (float): discount of ``W^j`` (the receiver's). Default 0.99.
        critic_coeff, loss_critic_type: as in ``SignalingGradientLoss``.
        num_messages (int): the size of the message space (needed by ``"dual"`` to size the multipliers).
        ensemble_shape (tuple of int): leading batch dimensions that index independent problems, e.g.
            ``(num_seeds,)`` when seeds train together (:class:`~msgzoo.modules.SeedEnsemble`). Estimates,
            hinges and multipliers are then per problem, never pooled across problems, and each ``loss_*`` is the
            sum over problems of each problem's loss
            (:func:`~msgzoo.objectives.common.reduce_per_seed`). Default ``()``: the whole batch is one problem.
        margin (str): what ``epsilon`` bounds. ``"joint"`` (eq. 4 as written): :math:`C(\sigma,\sigma') \ge
            \epsilon`, a margin in joint-probability x payoff units, which a message the optimum never sends
            (:math:`P(\sigma) = 0`, so :math:`C = 0`) can never meet. ``"posterior"``: :math:`C(\sigma,\sigma') \ge
            \epsilon P(\sigma)`, i.e. :math:`\mathbb E[\text{obey} - \text{deviate} \mid \sigma] \ge \epsilon`: the
            receiver gains at least ``epsilon`` (in its payoff units) per message it obeys, and unsent messages are
            unconstrained (with ``P(\sigma)`` estimated by the batch mean of :math:`\varphi(\sigma|s_t)`, with
            gradient). Default ``"joint"``.
        joint_epsilon (float): a joint margin added to every bound in either ``margin`` mode:
            :math:`C(\sigma,\sigma') \ge \epsilon P(\sigma) + \epsilon_J`. With :math:`\epsilon_J > 0` every message
            must stay in use (an unsent one has :math:`C = 0`), so the receiver keeps learning what each one means; a
            schedule may lower it to 0 (the recipes' warm-up does). Default 0.
        noise_allowance (float): ``k >= 0``: each hinge on a batch estimate (``"lagrangian"``; ``"stringent"`` with
            ``"all"``, whose hinges are on the pair estimates) penalises :math:`\hat C < b - k\,\mathrm{SE}` instead of
            :math:`\hat C < b` (``b`` the bound above), with SE the estimate's batch standard error (per problem,
            without gradient; ``std`` of its per-state terms over :math:`\sqrt T`). A hinge on a noisy estimate is
            positive in expectation while the true :math:`C` is above ``b`` (Jensen), so the sender keeps a surplus of
            a standard error or two; the allowance removes it. Not with the dual modes (whose multipliers price the
            estimates, not a hinge) nor ``"stringent"`` with ``"uniform"`` (a hinge per sample, not on an estimate).
            Default 0: the hinge on the estimate itself.
        smoothing (float): ``s >= 0``: each such hinge :math:`(x)^+` (``x`` the bound less the estimate) is replaced by
            its expectation under a Gaussian error of width :math:`\tau = s\,\mathrm{SE}`,
            :math:`\tau\,(z\Phi(z) + \varphi(z))` with :math:`z = x / \tau`, whose gradient :math:`\Phi(z)` moves
            smoothly with the estimate where the hinge's jumps from 0 to 1 (so Adam's second moment is not inflated by
            the hinge switching on and off). The same modes as ``noise_allowance``. Default 0: the hinge.
        allowance (str): how ``k`` is set. ``"fixed"``: ``k = noise_allowance`` for every hinge. ``"firing_rate"``:
            each hinge has its own ``k``, set from the share ``p`` of recent batches in which it fired,
            :math:`k = -\Phi^{-1}(p)` (clamped to ``ALLOWANCE_RANGE``), so that the *true* :math:`C` sits at its bound
            ``b``: against a signaling gradient that keeps pushing, a hinge balances it by firing in a share ``p`` of
            batches fixed by ``lambda`` and the game (``p = lambda* / lambda``), and with a Gaussian estimate that
            happens where :math:`C = b - \mathrm{SE}\,(k + \Phi^{-1}(p))`; a fixed ``k`` leaves the scheme inside its
            bound where ``p`` is small and past it where ``p`` is large (a small ``lambda``, where a learning receiver
            then stops obeying). ``p`` is a running average over batches, ``p <- decay p + (1 - decay) fired``, kept in
            the buffer ``hinge_firing_rate`` (per problem and hinge) and moved by :meth:`update_state` from what
            ``forward`` returns (``hinge_fired``); it starts at :math:`\Phi(-\text{noise\_allowance})`. The same
            modes as ``noise_allowance``. Default ``"fixed"``.
        firing_rate_decay (float): ``decay`` in ``(0, 1)`` of that running average (it remembers about ``1 / (1 -
            decay)`` batches). Default 0.99.

    Returns, from ``forward``: ``loss_obedience``, ``loss_critic`` and the detached diagnostics
    ``constraint`` (:math:`\hat C`), ``violation_rate`` (the share of terms below ``epsilon``) and
    ``lagrange_multiplier`` (mean :math:`\lambda`); in the dual modes also ``constraint_estimates`` (what each
    multiplier prices: :math:`\hat C_\sigma`, ``[*ensemble_shape, num_messages]``, in ``"dual"``;
    :math:`\hat C(\sigma,\sigma')`, ``[*ensemble_shape, num_messages * (num_messages - 1)]``, in
    ``"dual_pairwise"``) and ``constraint_bounds`` (the right-hand side each is held to: ``epsilon``, or
    :math:`\epsilon \hat P(\sigma)` with ``margin="posterior"``), which :meth:`update_multipliers` reads.

    Examples:
        >>> import torch
        >>> from msgzoo.envs import recommendation_letter
        >>> from msgzoo.modules import (ObservationMessageNet, VectorNet, make_action_value_critic,
        ...     make_receiver_actor, make_signaling_scheme)
        >>> from msgzoo.objectives import ObedienceConstraintLoss
        >>> env = recommendation_letter(num_envs=16, seed=0)
        >>> scheme = make_signaling_scheme(VectorNet(2, 2, bias=False))
        >>> receiver = make_receiver_actor(ObservationMessageNet(VectorNet(2, 2, bias=False)))
        >>> loss = ObedienceConstraintLoss(scheme, receiver, make_action_value_critic(
        ...     VectorNet(2, 2), out_key=("sender", "receiver_action_value")), epsilon=0.3, num_messages=2)
        >>> out = loss(env.step(receiver(scheme(env.reset()))))
        >>> sorted(out.keys())[:3]
        ['constraint', 'lagrange_multiplier', 'loss_critic']
    """

    @dataclass
    class _AcceptedKeys:
        """Tensordict keys the loss reads; change them with :meth:`set_keys`.

        Attributes:
            logits (NestedKey): where the scheme writes its logits. Defaults to ``("sender", "logits")``.
            message (NestedKey): the sent one-hot message (also what the receiver reads).
                Defaults to ``("sender", "message")``.
            action (NestedKey): the receiver's one-hot action. Defaults to ``("receiver", "action")``.
            reward (NestedKey): the receiver's reward, which ``W^j`` learns (under ``"next"``).
                Defaults to ``("receiver", "reward")``.
            action_value (NestedKey): where the critic writes ``W^j(s, .)``.
                Defaults to ``("sender", "receiver_action_value")``.
            value (NestedKey): where a value estimator's state value ``V^j(s)`` is written (only with
                :meth:`make_value_estimator`). Defaults to ``("sender", "receiver_value")``.
            done (NestedKey): done flag (under ``"next"``). Defaults to ``"done"``.
            terminated (NestedKey): terminated flag (under ``"next"``). Defaults to ``"terminated"``.
        """

        logits: NestedKey = ("sender", "logits")
        message: NestedKey = ("sender", "message")
        action: NestedKey = ("receiver", "action")
        reward: NestedKey = ("receiver", "reward")
        action_value: NestedKey = ("sender", "receiver_action_value")
        value: NestedKey = ("sender", "receiver_value")
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    scheme_network: TensorDictModule
    receiver_network: nn.Module
    critic_network: TensorDictModule
    critic_network_params: TensorDictParams
    target_critic_network_params: TensorDictParams

    def __init__(
        self,
        scheme_network: nn.Module,
        receiver_network: nn.Module,
        critic_network: TensorDictModule,
        *,
        lagrange_multiplier: float = 5.0,
        epsilon: float = 0.0,
        mode: str = "lagrangian",
        counterfactual: str = "uniform",
        dual_lr: float = 0.01,
        gamma: float = 0.99,
        critic_coeff: float = 1.0,
        loss_critic_type: str = "l2",
        num_messages: int | None = None,
        ensemble_shape: tuple[int, ...] = (),
        margin: str = "joint",
        joint_epsilon: float = 0.0,
        recommendation_weight: float = 0.0,
        noise_allowance: float = 0.0,
        smoothing: float = 0.0,
        allowance: str = "fixed",
        firing_rate_decay: float = 0.99,
    ):
        if not 0.0 <= recommendation_weight <= 1.0:
            raise ValueError(f"recommendation_weight={recommendation_weight} is invalid: expected a weight in [0, 1].")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is invalid: expected one of {MODES}.")
        if counterfactual not in COUNTERFACTUALS:
            raise ValueError(f"counterfactual={counterfactual!r} is invalid: expected one of {COUNTERFACTUALS}.")
        if margin not in MARGINS:
            raise ValueError(f"margin={margin!r} is invalid: expected one of {MARGINS}.")
        if lagrange_multiplier < 0:
            raise ValueError(f"lagrange_multiplier={lagrange_multiplier} is invalid: expected lambda >= 0.")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma={gamma} is invalid: expected a discount in [0, 1].")
        if dual_lr <= 0:
            raise ValueError(f"dual_lr={dual_lr} is invalid: expected a positive step size.")
        if mode in DUAL_MODES and not (isinstance(num_messages, int) and num_messages >= 2):
            raise ValueError(f"num_messages={num_messages!r} is invalid: mode={mode!r} needs the message-space size (>= 2).")
        if mode == "dual_pairwise" and counterfactual != "all":
            raise ValueError(
                f"counterfactual={counterfactual!r} is invalid with mode='dual_pairwise': it prices every pair of messages, "
                "so it needs counterfactual='all'."
            )
        if not noise_allowance >= 0.0:
            raise ValueError(f"noise_allowance={noise_allowance} is invalid: expected k >= 0 standard errors.")
        if not smoothing >= 0.0:
            raise ValueError(f"smoothing={smoothing} is invalid: expected a width >= 0 in standard errors.")
        if allowance not in ALLOWANCES:
            raise ValueError(f"allowance={allowance!r} is invalid: expected one of {ALLOWANCES}.")
        for name, value, used, off in (("noise_allowance", noise_allowance, noise_allowance > 0, "0"),
                                       ("smoothing", smoothing, smoothing > 0, "0"),
                                       ("allowance", allowance, allowance == "firing_rate", "'fixed'")):
            if used and (mode in DUAL_MODES or (mode == "stringent" and counterfactual == "uniform")):
                raise ValueError(
                    f"{name}={value!r} is invalid with mode={mode!r}, counterfactual={counterfactual!r}: it acts on a "
                    "hinge on a batch estimate, which only mode='lagrangian' (or 'stringent' with "
                    f"counterfactual='all') has; set {name}={off}."
                )
        if allowance == "firing_rate":
            if counterfactual == "all" and not (isinstance(num_messages, int) and num_messages >= 2):
                raise ValueError(
                    f"num_messages={num_messages!r} is invalid: allowance='firing_rate' with counterfactual='all' keeps "
                    "a firing rate per ordered pair of messages, so it needs the message-space size (>= 2)."
                )
            if not 0.0 < firing_rate_decay < 1.0:
                raise ValueError(f"firing_rate_decay={firing_rate_decay} is invalid: expected a decay in (0, 1).")
        ensemble_shape = check_ensemble_shape(ensemble_shape)
        super().__init__()
        self.ensemble_shape = ensemble_shape
        self.scheme_network = logits_module_of(scheme_network)
        self.receiver_network = receiver_network
        self.convert_to_functional(critic_network, "critic_network", create_target_params=True)
        self.mode, self.counterfactual, self.margin = mode, counterfactual, margin
        self.joint_epsilon = float(joint_epsilon)
        self.recommendation_weight = float(recommendation_weight)
        self.noise_allowance = float(noise_allowance)
        self.smoothing = float(smoothing)
        self.allowance, self.firing_rate_decay = allowance, float(firing_rate_decay)
        self.epsilon, self.dual_lr, self.gamma = float(epsilon), float(dual_lr), float(gamma)
        self.critic_coeff, self.loss_critic_type, self.num_messages = float(critic_coeff), loss_critic_type, num_messages
        size = {"dual": num_messages, "dual_pairwise": (num_messages or 0) * ((num_messages or 0) - 1)}.get(mode, 1)
        self.register_buffer("lagrange_multiplier", torch.full((*ensemble_shape, size), float(lagrange_multiplier)))
        if allowance == "firing_rate":  # only then: a fixed allowance's checkpoints keep their keys
            hinges = num_messages * (num_messages - 1) if counterfactual == "all" else 1
            start = torch.special.ndtr(torch.tensor(-float(noise_allowance), dtype=torch.float64)).item()
            self.register_buffer("hinge_firing_rate", torch.full((*ensemble_shape, hinges), start))

    @property
    def out_keys(self) -> list:
        keys = ["loss_obedience", "loss_critic", "constraint", "violation_rate", "lagrange_multiplier"]
        if self.allowance == "firing_rate":
            keys = keys + ["hinge_fired", "noise_allowance"]
        return keys + ["constraint_estimates", "constraint_bounds"] if self.mode in DUAL_MODES else keys

    def update_state(self, loss_output: TensorDictBase) -> None:
        """What the loss carries from batch to batch, moved once per update after ``forward`` on that batch: the
        multipliers' dual ascent (:meth:`update_multipliers`, dual modes) and the hinges' firing rates
        (``allowance="firing_rate"``: ``p <- decay p + (1 - decay) fired``). A no-op where neither applies. The
        recipes call it as their sender phase's ``after_loss`` hook."""
        self.update_multipliers(loss_output)
        if self.allowance == "firing_rate":
            fired = loss_output.get("hinge_fired", None)
            if fired is None:
                raise KeyError("update_state needs 'hinge_fired', which forward returns with allowance='firing_rate': "
                               "pass the output of this loss's forward.")
            decay = self.firing_rate_decay
            with torch.no_grad():
                self.hinge_firing_rate.copy_(decay * self.hinge_firing_rate + (1 - decay) * fired)

    @torch.no_grad()
    def _firing_rate_allowance(self) -> torch.Tensor:
        """Each hinge's ``k = -Phi^{-1}(p)`` from its firing rate ``p`` (``allowance="firing_rate"``), clamped to
        :data:`ALLOWANCE_RANGE`: ``[*ensemble_shape, hinges]``."""
        rate = self.hinge_firing_rate.clamp(1e-4, 1 - 1e-4)
        return (-torch.special.ndtri(rate)).clamp(*ALLOWANCE_RANGE)

    @torch.no_grad()
    def update_multipliers(self, loss_output: TensorDictBase) -> None:
        """One projected dual-ascent step (``"dual"`` / ``"dual_pairwise"`` modes), from what ``forward`` returned
        on a batch: ``lambda <- max(0, lambda - dual_lr * (C - b))`` for each multiplier, its estimate ``C`` and
        its bound ``b`` (``epsilon``, plus ``joint_epsilon``; times ``P(sigma)`` with ``margin="posterior"``). Call
        it once per update, after ``forward`` (which used the multipliers from before the step). A no-op in the
        fixed-multiplier modes."""
        if self.mode not in DUAL_MODES:
            return
        missing = [k for k in ("constraint_estimates", "constraint_bounds") if loss_output.get(k, None) is None]
        if missing:
            raise KeyError(
                f"update_multipliers needs {missing}, which forward returns in mode={self.mode!r}: pass the output of "
                "this loss's forward."
            )
        estimates, bounds = loss_output.get("constraint_estimates"), loss_output.get("constraint_bounds")
        self.lagrange_multiplier.sub_(self.dual_lr * (estimates - bounds)).clamp_(min=0.0)

    def _message_values(self, tensordict: TensorDictBase, w: torch.Tensor, num_messages: int) -> torch.Tensor:
        """``q[t, sigma] = sum_a pi(a | o_t, sigma) W^j(s_t, a)``: what each message is worth to the receiver."""
        pi_all = memo_receiver_probs_all_messages(self, tensordict, num_messages)
        q = torch.einsum("...ka,...a->...k", pi_all, w)
        beta = self.recommendation_weight
        if beta > 0:  # the receiver's policy mixed with obedience to the recommendation (eq. 3 at beta = 1)
            q = mix_with_recommendations(q, w, beta)
        return q

    def constraint_matrix(self, tensordict: TensorDictBase) -> torch.Tensor:
        r"""The batch estimate of eq. 4 for every pair: ``[*ensemble_shape, sigma, sigma']``, with gradient
        through phi.

        ``C[k, l] = mean_t phi(k|s_t,o_t) * (q[t,k] - q[t,l])``, unbiased for eq. 4's left side when the
        states of the batch are drawn from the occupancy measure ``d`` and ``W^j`` is exact.
        """
        logits = scheme_logits(self.scheme_network, tensordict, self.tensor_keys.logits)
        with torch.no_grad():
            w = self._critic_values(tensordict)
            q = self._message_values(tensordict, w, logits.shape[-1])
        return self._pairwise(softmax(logits), q)

    def _per_problem(self, x: torch.Tensor) -> torch.Tensor:
        """``[*ensemble_shape, *batch, *event] -> [*ensemble_shape, n, *event]`` (``event``: the last dim)."""
        return x.reshape(*self.ensemble_shape, -1, x.shape[-1])

    def _pairwise(self, phi: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        phi, q = self._per_problem(phi), self._per_problem(q)
        m = phi.transpose(-1, -2) @ q / phi.shape[-2]  # m[k, l] = mean_t phi(k|s_t) q[t, l]
        return m.diagonal(dim1=-2, dim2=-1).unsqueeze(-1) - m  # the diagonal is an exact zero

    @torch.no_grad()
    def _pairwise_standard_error(
        self, phi: torch.Tensor, q: torch.Tensor, mean: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The batch standard error of each ``C[k, l]`` of :meth:`_pairwise`, ``[*ensemble_shape, K, K]``: the
        per-state terms ``d_t = phi(k|s_t) (q[t,k] - q[t,l])`` have second moment ``mean_t phi_k^2 q_k^2 -
        2 mean_t phi_k^2 q_k q_l + mean_t phi_k^2 q_l^2``, two K x K matmuls as the first moment's (no T x K x K
        tensor); the variance is the unbiased one (``torch.std``'s). ``mean``: :meth:`_pairwise`'s matrix when the
        caller has it already (computed here otherwise)."""
        mean = self._pairwise(phi, q) if mean is None else mean.detach()
        phi, q = self._per_problem(phi), self._per_problem(q)
        n = phi.shape[-2]
        phi2 = phi.square()
        a = phi2.transpose(-1, -2) @ q.square() / n  # a[k, l] = mean_t phi_k^2 q_l^2
        b = (phi2 * q).transpose(-1, -2) @ q / n  # b[k, l] = mean_t phi_k^2 q_k q_l
        second = a.diagonal(dim1=-2, dim2=-1).unsqueeze(-1) - 2.0 * b + a
        variance = (second - mean.square()).clamp(min=0.0) * (n / max(n - 1, 1))
        return (variance / n).sqrt()

    def _hinge(self, shortfall: torch.Tensor, se: torch.Tensor | None) -> torch.Tensor:
        """``relu(shortfall)``, or with ``smoothing`` its expectation under a Gaussian error of ``tau = smoothing x
        SE``, ``tau (z Phi(z) + phi(z))`` with ``z = shortfall / tau``: its gradient ``Phi(z)`` moves smoothly with
        the estimate instead of jumping from 0 to 1 where the estimate crosses the bound."""
        if not self.smoothing or se is None:
            return torch.relu(shortfall)
        tau = (self.smoothing * se).clamp_min(1e-12)
        z = shortfall / tau
        return tau * (z * torch.special.ndtr(z) + torch.exp(-0.5 * z.square()) / math.sqrt(2.0 * math.pi))

    def _critic_values(self, tensordict: TensorDictBase) -> torch.Tensor:
        critic = self.critic_network
        check_writes(critic, self.tensor_keys.action_value, "action_value", "critic_network")
        with online_params(self.critic_network_params, critic):
            return critic_output(critic, tensordict, self.tensor_keys.action_value)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = self.tensor_keys
        check_reads(self.receiver_network, keys.message, "message", "receiver_network")
        self._check_in_keys(tensordict)
        logits = scheme_logits(self.scheme_network, tensordict, keys.logits)
        num_messages = logits.shape[-1]
        phi = softmax(logits)
        message = tensordict.get(keys.message).to(phi.dtype)
        loss_critic, w = action_value_td_loss(
            self, tensordict, scheme=self.scheme_network, receiver=self.receiver_network,
            num_messages=num_messages, gamma=self.gamma, loss_type=self.loss_critic_type,
        )
        with torch.no_grad():
            q = self._message_values(tensordict, w, num_messages)
        lam = self.lagrange_multiplier.clone()
        eps = self.epsilon

        if self.counterfactual == "uniform":
            # sigma'_t uniform over the *other* messages: sigma' = sigma_t would only add a zero term
            sent = message.argmax(-1)
            other = torch.randint(num_messages - 1, sent.shape, device=q.device)
            other = other + (other >= sent).to(other.dtype)
            q_sent = (q * message).sum(-1)
            q_other = q.gather(-1, other.unsqueeze(-1)).squeeze(-1)
            weight = (phi * message).sum(-1)
            terms = weight * (q_sent - q_other)  # c_t of eq. 6
            terms = terms.reshape(*self.ensemble_shape, -1)  # [*ensemble_shape, samples]
            estimate = terms.mean(-1)
            # per-message estimates: each sample counts toward the message it sent
            per_message = (terms.unsqueeze(-1) * self._per_problem(message)).mean(-2)
            pair_terms = estimate.unsqueeze(-1)
            if self.margin == "posterior":  # epsilon per unit of phi: c_t >= eps * phi(sigma_t | s_t)
                weight = weight.reshape(*self.ensemble_shape, -1)
                terms_eps = eps * weight
                per_message_eps = (terms_eps.unsqueeze(-1) * self._per_problem(message)).mean(-2)
                pairs_eps = terms_eps.mean(-1).unsqueeze(-1)
        else:
            matrix = self._pairwise(phi, q)
            pair_terms = terms = _off_diagonal(matrix)  # [*ensemble_shape, pairs]
            estimate = terms.mean(-1)
            per_message = matrix.sum(-1) / (num_messages - 1)
            if self.margin == "posterior":  # C(k, l) >= eps * P(k), P(k) = mean_t phi(k | s_t)
                per_message_eps = eps * self._per_problem(phi).mean(-2)
                rows = per_message_eps.unsqueeze(-1).expand(*per_message_eps.shape, num_messages)  # [k, l] = eps P(k)
                pairs_eps = terms_eps = _off_diagonal(rows)
        if self.margin == "joint":
            terms_eps = pairs_eps = per_message_eps = eps
        if self.joint_epsilon:
            floor = self.joint_epsilon
            terms_eps, pairs_eps, per_message_eps = terms_eps + floor, pairs_eps + floor, per_message_eps + floor

        hinge_pairs, hinge_terms = pairs_eps, terms_eps
        se = None
        adaptive = self.allowance == "firing_rate"
        if self.noise_allowance or self.smoothing or adaptive:  # the batch standard error of each hinged estimate
            if self.counterfactual == "all":
                se = _off_diagonal(self._pairwise_standard_error(phi, q, matrix))
            else:  # the one estimate: the mean of the c_t
                se = terms.detach().std(-1, keepdim=True) / terms.shape[-1] ** 0.5
        if adaptive or self.noise_allowance:  # the hinge fires at C_hat < bound - k SE: no surplus kept against noise
            allowance = self._firing_rate_allowance() if adaptive else self.noise_allowance
            hinge_pairs = pairs_eps - allowance * se
            if self.counterfactual == "all":
                hinge_terms = hinge_pairs  # stringent's terms are the pairs

        # every loss below is per problem (the last dim reduced), then summed over problems (reduce_per_seed)
        if self.mode == "lagrangian":
            # eq. 7: sum over the estimated pairs of lambda * (C(sigma, sigma') - epsilon)^-
            hinge = self._hinge(hinge_pairs - pair_terms, se)
            loss = reduce_per_seed(lam[..., 0] * hinge.sum(-1), self.ensemble_shape)
        elif self.mode == "stringent":
            hinge = self._hinge(hinge_terms - terms, se if self.counterfactual == "all" else None)
            loss = reduce_per_seed(lam[..., 0] * hinge.mean(-1), self.ensemble_shape)
        else:
            # what each multiplier prices, and the right-hand side it is held to
            estimates, bounds = (per_message, per_message_eps) if self.mode == "dual" else (pair_terms, pairs_eps)
            loss = -reduce_per_seed((lam * (estimates - bounds)).sum(-1), self.ensemble_shape)
        out = {
            "loss_obedience": loss,
            "loss_critic": self.critic_coeff * loss_critic,
            "constraint": estimate.detach().mean(),
            "violation_rate": (terms.detach() < terms_eps).float().mean(),
            "lagrange_multiplier": lam.mean(),
        }
        if adaptive:  # for update_state; the allowance as the mean k over hinges and problems
            out["hinge_fired"] = (pair_terms.detach() < hinge_pairs).to(pair_terms.dtype)
            out["noise_allowance"] = allowance.mean()
        if self.mode in DUAL_MODES:
            out["constraint_estimates"] = estimates.detach()  # for update_multipliers
            bounds = torch.as_tensor(bounds, dtype=estimates.dtype, device=estimates.device)
            out["constraint_bounds"] = bounds.detach().expand_as(estimates)
        return TensorDict(out, batch_size=[])


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix[..., ~eye(K)]`` (row-major order) without a boolean mask, whose output shape torch.compile cannot
    know: drop the first entry of the flattened ``K x K``, view ``(K - 1, K + 1)``, drop the last column."""
    k = matrix.shape[-1]
    flat = matrix.flatten(-2)[..., 1:].unflatten(-1, (k - 1, k + 1))
    return flat[..., :-1].flatten(-2)
