"""Calibration on SST-2 dev: ECE and log loss before and after temperature scaling.

    python benchmarks/calibration.py MODEL [--engine pytorch]

MODEL: a folder trained on SST-2 with the defaults (e.g. `finebert train ../shared/data/sst2/train.tsv
--output runs/sst2-full --label-names negative,positive`). Prints, on the 872 dev sentences:
1. uncalibrated (T = 1) and with the temperature fitted at the end of training on the validation
   holdout (what a default model does);
2. two-fold cross-fitting on dev (`finebert calibrate` on one half, scored on the other, and back):
   what a user who calibrates on data like their own gets, never scoring on the data it was fitted on.
"""

import argparse

import numpy as np

from common import SST2, cpu_description, read_tsv


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--engine", default="pytorch")
    args = parser.parse_args()
    print(cpu_description(), flush=True)

    from sklearn.model_selection import StratifiedKFold

    from finebert.calibration import figures, fit_temperature
    from finebert.inference import Classifier

    clf = Classifier.load(args.model, engine=args.engine)
    space = clf.label_space
    texts, labels = zip(*read_tsv(SST2 / "dev.tsv"))
    y = np.array(labels)
    logits = clf.logits(list(texts))  # (872, 2), raw: no temperature
    accuracy = float((logits.argmax(axis=1) == y).mean())
    trained_t = clf.temperature
    before = figures(space, logits, y, None)
    after = figures(space, logits, y, trained_t)
    print(f"dev accuracy {accuracy:.4f} (a temperature never changes it)")
    print(f"uncalibrated:                       ECE {before['ece_after']:.4f}  log loss {before['log_loss_after']:.4f}")
    print(f"training's temperature T={trained_t}: ECE {after['ece_after']:.4f}  log loss {after['log_loss_after']:.4f}")

    eces, losses, temps = [], [], []
    for fit, held in StratifiedKFold(2, shuffle=True, random_state=0).split(logits, y):
        t = fit_temperature(space, logits[fit], y[fit])
        f = figures(space, logits[held], y[held], t)
        eces.append(f["ece_after"])
        losses.append(f["log_loss_after"])
        temps.append(t)
    print(f"2-fold cross-fitted on dev (T={', '.join(f'{t:.3f}' for t in temps)}): ECE {np.mean(eces):.4f} "
          f"(halves {', '.join(f'{e:.4f}' for e in eces)})  log loss {np.mean(losses):.4f}")


if __name__ == "__main__":
    main()
