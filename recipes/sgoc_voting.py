"""SGOC with several receivers: a committee vote, private or public signaling.

    python recipes/sgoc_voting.py num_seeds=5
    python recipes/sgoc_voting.py signaling=public num_seeds=5

The pipeline (game, agents, losses, training, exact evaluation) is msgzoo.pipelines.multi_receiver.
"""
import hydra
from omegaconf import DictConfig

from msgzoo.pipelines.multi_receiver import run


@hydra.main(config_path="config", config_name="sgoc_voting", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
