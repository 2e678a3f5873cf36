"""Training engine: ``trainer.Trainer`` (the loop), ``hooks`` (what happens around it) and ``launch`` (torchrun /
DDP)."""
