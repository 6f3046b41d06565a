"""SG on Reaching Goals (paper, Figure 2 e-h): 3x3 by default, other maps by config.

    python recipes/sg_reaching_goals.py seed=3 collector.total_episodes=20_000
    python recipes/sg_reaching_goals.py map=5x5 env.receiver_observes=[position]

The pipeline (game, method, run, training, evaluation, figures) is msgzoo.pipelines.reaching_goals.
"""
import hydra
from omegaconf import DictConfig

from msgzoo.pipelines.reaching_goals import run


@hydra.main(config_path="config", config_name="sg_reaching_goals", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg, method=cfg.method)


if __name__ == "__main__":
    main()
