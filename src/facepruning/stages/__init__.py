"""The pipeline's stages as functions: what notebooks 01-03 run, and what
``python -m facepruning prepare|train|prune`` (also under ``torchrun``) runs.

One module per stage, each with a ``run`` function: ``from facepruning.stages import train;
train.run(params)``. This package imports none of them, so a stage loads only its own code (the
prepare stage never imports the training code, and DVC's dependencies follow the imports).

Each stage function takes its parameters as the dataclass of :mod:`facepruning.parameters`
(the single declaration the notebooks' ``parameters`` cells, params.yaml and the CLI follow), or
as names and values that are validated against it: an unknown name or a wrong type raises
:class:`~facepruning.errors.ParameterError` before any work starts. ``figures_dir`` is accepted
and ignored: figures are the notebooks' business.

Train and prune load the prepared data, build (or load) the network on
:func:`~facepruning.distributed.default_device`, train or prune with checkpoints under
``checkpoint_dir`` (resumed when the run's identity, its parameters less paths and worker counts,
matches; a checkpoint of another identity is kept aside, never silently overwritten), evaluate,
and write the model (:func:`~facepruning.pruning.save_model`), the metrics JSON and the history
CSV (and the layer widths CSV for pruning) atomically and byte-deterministically: wall-clock times
stay out of every file a later stage reads. Under torchrun the work is data-parallel and rank 0
alone evaluates and writes; the other ranks wait at a barrier and return empty metrics.
"""
