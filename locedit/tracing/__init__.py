"""The tracing half: corrupt the subject, restore states in windows of layers, measure
(:mod:`~locedit.tracing.trace`, :mod:`~locedit.tracing.attribution`); one job's loop over its
cases (:mod:`~locedit.tracing.job`); per (case, layer) effects from the long tables
(:mod:`~locedit.tracing.effects`, torch-free, read by the analysis). Never imports the editing half."""
