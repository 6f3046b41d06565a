"""SGOC for a sender that also acts: the Coaching Letter (coach, then recommend).

    python recipes/sgoc_coaching_letter.py num_seeds=5

The pipeline (networks, losses, training, exact evaluation) is msgzoo.pipelines.acting_sender.
"""
import hydra
from omegaconf import DictConfig

from msgzoo.pipelines.acting_sender import run


@hydra.main(config_path="config", config_name="sgoc_coaching_letter", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
