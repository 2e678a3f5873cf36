"""Training engine: ``train_loop.TrainerBase`` (the epoch loop), ``hooks`` (everything around the optimisation
step, one class per concern), ``trainer.Trainer`` (builds a run from a config; ``build_hooks``) and ``launch``
(torchrun / DDP)."""
