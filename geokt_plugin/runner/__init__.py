"""The Accelerate runner: config -> dependencies -> models -> box -> loop -> checkpoints and logs.

``geokt-train --config X.yaml`` on one machine, ``accelerate launch --multi_gpu --num_processes N -m
geokt_plugin.train --config X.yaml`` on several GPUs, ``torchrun --nproc_per_node 2 -m geokt_plugin.train --config
X.yaml --device cpu`` for two CPU processes (gloo); from Python, ``run(RunOptions(config="X.yaml"))``.

torchdistill's boxes still parse the config, set the hooks and build the criterion, optimizer and scheduler
(:mod:`.boxes`); the runner owns everything Accelerate does:

1. ``accelerator.prepare`` on the student (the auxiliary wrapper if any: student and adapters are one DDP
   module), optimizer, loaders and scheduler, assigned back into the box; the frozen instructor is moved to the
   device, put in eval mode, kept fp32 and never DDP-wrapped (:mod:`.session`);
2. ``box.forward_process`` under ``accelerator.autocast()``, with ``secondary_forward`` called on the *unwrapped*
   student (torchdistill's own ``isinstance`` test skips it under DDP);
3. ``accelerator.backward``, ``accelerator.clip_grad_norm_`` with the config's ``max_grad_norm``, optimizer step
   (:mod:`.loop`);
4. evaluation (top-1) with ``gather_for_metrics``;
5. atomic, checksummed checkpoints of the unwrapped inner student (plus adapters, optimizer, scheduler, per-rank
   RNG states) that make ``--resume`` reproduce an uninterrupted run (:mod:`.checkpoint`, :mod:`.checksum`,
   :mod:`.rng`, :mod:`.loaders`); ``--resume`` continues only the same run (:mod:`.continuity`) and finishes a run
   whose epochs are done; one run per directory (:mod:`.lock`); ``--overwrite`` keeps the previous outputs until
   the first checkpoint (:mod:`.previous`).

The sequence of steps is :func:`run`; the command line is :mod:`.cli`.
"""

from .atomic import OutputWriteError
from .checkpoint import CHECKPOINT_FORMAT, Checkpoint
from .cli import build_parser, main
from .loop import TrainingStopped
from .options import RunOptions
from .run import run

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "OutputWriteError", "RunOptions", "TrainingStopped", "build_parser",
           "main", "run"]
