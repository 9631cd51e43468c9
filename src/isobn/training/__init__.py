"""The fine-tuning harness: settings, data, model, optimisation, the training recipe,
evaluation, checkpoints and run directories, experiments and their tables.

``isobn.training.train.train(cfg)`` is the recipe; ``isobn.training.config.TrainConfig`` its
settings."""
