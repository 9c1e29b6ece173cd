"""Training, one idea per module, and the two commands that use them: ``hdl train`` and ``hdl embed``.

- ``settings``: what a run is (``RunConfig``, ``TrainConfig``), parsed once from ``--set key=value``;
- ``streams``: the run's data on the device and its epoch-shuffled index streams;
- ``averaging``: the EMA model and the warm-up of the EMA decay and BatchNorm momentum;
- ``optim``: SGD and the learning-rate schedules;
- ``compiling``: ``torch.compile`` of the step (the ``compile`` setting);
- ``progress``: the progress bar;
- ``inference``: predictions in batches, bf16 autocast, accuracy;
- ``checkpoint``: saving and loading, RNG states, metrics.json's summary;
- ``stop_signal``: stopping at a step boundary on SLURM's time-limit warning, to resume in the retry;
- ``probe``: the label probe, HDL on the EMA model's embeddings against its argmax through training;
- ``refresh``: the label refresh, stage 2's extra labels relabeled every ``--refresh-every`` steps;
- ``between_steps``: the probe and the refresh where a run asks for them, called by the loop;
- ``loop``: the ``Trainer``, which holds the others and steps them;
- ``train_cli``: ``hdl train``, which builds a ``Trainer`` from the command line and runs it;
- ``embed_cli``: ``hdl embed``, a checkpoint's embeddings and probabilities.

Only ``train_cli`` imports ``loop``: ``hdl embed`` reads a checkpoint and predicts with
``checkpoint`` and ``inference`` alone, without importing the training loop.
"""
