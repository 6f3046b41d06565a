"""The exact game theory: the persuasion LP (eq. 1) and its Markov and multi-receiver variants, exact payoffs and
metrics of tabulated policies, the suite of one-step games. Torch/scipy only, no learning."""
