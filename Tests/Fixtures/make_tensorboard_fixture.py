#!/usr/bin/env python3
"""Writes tensorboard_scalars.tfevents: the bytes torch.utils.tensorboard.SummaryWriter (TensorBoard's
own event file writer) produces for a few scalars at fixed wall times, so the Swift tests can check
that TensorBoardWriter writes the same file. Run by hand (needs torch and tensorboard):

    /tmp/torch-venv/bin/pip install torch tensorboard
    /tmp/torch-venv/bin/python Tests/Fixtures/make_tensorboard_fixture.py
"""
import glob
import os
import shutil
import tempfile
import time

from torch.utils.tensorboard import SummaryWriter

here = os.path.dirname(os.path.abspath(__file__))
directory = tempfile.mkdtemp()
time.time = lambda: 1764374400.25  # the file-version event's wall time
writer = SummaryWriter(log_dir=directory)
# (tag, value, step, wall time): what a training log writes, including a step of 0 and a negative value.
for tag, value, step, wall in [("learning-rate", 3e-4, 1, 1764374401.5), ("lm loss", 10.9819, 1, 1764374401.5),
                               ("lm loss vs samples", 10.9819, 8, 1764374401.5), ("grad-norm", 1.25, 2, 1764374402.75),
                               ("lm loss validation", 9.5, 0, 1764374403.0), ("params-norm", -0.0625, 123456789, 1764374404.0)]:
    writer.add_scalar(tag, value, step, walltime=wall)
writer.close()
(path,) = glob.glob(os.path.join(directory, "events.out.tfevents.*"))
shutil.copy(path, os.path.join(here, "tensorboard_scalars.tfevents"))
shutil.rmtree(directory)
print("wrote", os.path.join(here, "tensorboard_scalars.tfevents"), os.path.getsize(os.path.join(here, "tensorboard_scalars.tfevents")), "bytes")
