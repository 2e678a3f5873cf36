"""Training engine: ``train_loop.TrainerBase`` (the epoch loop), ``hooks`` (everything around the optimisation
step, one class per concern), ``trainer.Trainer`` (builds a run from a config; ``build_hooks``), ``evaluator``
(the one way to evaluate a model or checkpoint: training, reid-test, and reid-visualize through
``ranked_lists``), ``run_folder`` (where a run and its evaluations write) and ``launch`` (torchrun / DDP)."""
