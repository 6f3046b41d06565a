"""The receiver's surplus on the Recommendation Letter in persuasion-suite result files, against the batch noise.

    python benchmarks/letter_surplus.py benchmarks/results/persuasion_suite.json --batch 2048

Per seed: the fraction of the LP gain, the exact surplus C(hire, not hire) = sum_s d(s) phi(hire|s) (u(s, hire) -
u(s, not hire)) of the final scheme (what the sender leaves HR; the LP leaves 0), and the standard error of its batch
estimate (eq. 6 with ``counterfactual=all``) on ``--batch`` students when HR obeys and W^j is exact: the std of the
per-student terms phi(hire|s_t) (u(s_t, hire) - u(s_t, not hire)) over sqrt(batch). The noise account of the
plateau (docs/equations.md, "A hinge on an estimate") predicts a surplus of about 1.6 such standard errors.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from msgzoo.envs.bayesian_persuasion import RECOMMENDATION_LETTER

HIRE, NOT_HIRE = 1, 0


def seed_rows(result: dict, batch: int) -> list[dict]:
    prior, u = RECOMMENDATION_LETTER["prior"], RECOMMENDATION_LETTER["receiver_utility"]
    gain = [u[s][HIRE] - u[s][NOT_HIRE] for s in range(len(prior))]
    rows = []
    for fraction, scheme, policy in zip(result["fraction"], result["scheme"], result["policy"]):
        message = max(range(len(policy)), key=lambda m: policy[m][HIRE])  # the message HR reads as "hire"
        terms = [(p, scheme[s][message] * gain[s]) for s, p in enumerate(prior)]
        mean = sum(p * t for p, t in terms)
        std = math.sqrt(sum(p * t * t for p, t in terms) - mean**2)
        rows.append(dict(fraction=fraction, surplus=mean, se=std / math.sqrt(batch)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--batch", type=int, nargs="+", default=[2048], help="students per batch (one per file, or one)")
    parser.add_argument("--method", default="sgoc")
    args = parser.parse_args()
    batches = args.batch * len(args.results) if len(args.batch) == 1 else args.batch
    for path, batch in zip(args.results, batches):
        (result,) = [r for r in json.loads(path.read_text())["results"] 
                     if r["game"] == "recommendation_letter" and r["method"] == args.method]
        rows = seed_rows(result, batch)
        print(f"{path} ({result['method']}, batch {batch}):")
        for key in ("fraction", "surplus", "se"):
            values = [r[key] for r in rows]
            print(f"  {key:9s} " + " ".join(f"{v:.4f}" for v in values) + f"   mean {statistics.fmean(values):.4f}")
        print(f"  surplus / se mean {statistics.fmean(r['surplus'] / r['se'] for r in rows):.2f}")


if __name__ == "__main__":
    main()
