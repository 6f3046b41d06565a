"""SGOC on Recommendation Letter, or any one-step persuasion game by config.

    python recipes/sgoc_recommendation_letter.py seed=3 collector.total_frames=1_000_000
    python recipes/sgoc_recommendation_letter.py env.game=seller_buyer env.num_messages=3
    python recipes/sgoc_recommendation_letter.py env.game=weather_forecast env.num_messages=3  # a Markov game

The pipeline (game, method, run, training, exact evaluation) is msgzoo.pipelines.one_step.
"""
import hydra
from omegaconf import DictConfig

from msgzoo.pipelines.one_step import run


@hydra.main(config_path="config", config_name="sgoc_recommendation_letter", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg, method=cfg.method)


if __name__ == "__main__":
    main()
