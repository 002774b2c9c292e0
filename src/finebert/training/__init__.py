"""Stage 4, training: fine-tune every weight of the encoder and the head.

The rooms, in the order a run walks through them (imports point down this list, never up):

    run.py          train(): checks the output folder, prepares the task, runs the loop, saves the model
    loop.py         TrainState, the loop on one screen: train -> run_epoch -> train_step -> end_epoch -> finish
    checkpoints.py  a run's whole state on disk and back (--resume)
    warm_start.py   before fine-tuning: the head fit, the contrastive stage; after it: weight interpolation
    optim.py        AdamW and its schedule, parameter groups, freezing, the used embedding rows
    losses.py       cross-entropy or binary cross-entropy, with class weights
    recipes.py      reading and preparing the data (Task), and the recipe chosen for its size
    distill.py      finebert.distill: a student trained on a teacher's answers (Task.soft), and the guard
    distributed.py  several processes under torchrun (--nproc)

    import finebert
    clf = finebert.train("reviews.csv", output="model/")    # the one function most callers need
"""

from finebert.training.losses import class_weights
from finebert.training.loop import TrainState, bucketed_batches, validate, within_noise
from finebert.training.optim import AdamW, UsedRows
from finebert.training.recipes import (FEW_SHOT_MAX_ROWS, HEAD_FIRST_MAX_ROWS, RECIPE_SETTINGS, Task, check_data,
                                       choose_recipe, describe_recipe, prepare)
from finebert.training.distill import DistillationRefused, distill
from finebert.training.run import train
from finebert.training.warm_start import contrast_encoder, fit_head, interpolate

__all__ = ["train", "distill", "DistillationRefused", "prepare", "check_data", "choose_recipe", "describe_recipe", "Task", "TrainState", "validate",
           "within_noise", "bucketed_batches", "AdamW", "UsedRows", "class_weights", "fit_head", "contrast_encoder",
           "interpolate", "RECIPE_SETTINGS", "FEW_SHOT_MAX_ROWS", "HEAD_FIRST_MAX_ROWS"]
