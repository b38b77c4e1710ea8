"""The editing half: the methods (:mod:`~locedit.editing.methods`: FT-1, FT-5, ROME, MEMIT), the
five problems as requests (:mod:`~locedit.editing.problems`), key statistics
(:mod:`~locedit.editing.key_stats`), one edit job's loop and scoring (:mod:`~locedit.editing.job`,
:mod:`~locedit.editing.evaluation`, :mod:`~locedit.editing.metrics`). Hyperparameter defaults
(:mod:`~locedit.editing.hparams`) are torch-free, so this ``__init__`` imports nothing."""
