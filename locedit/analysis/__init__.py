"""The analysis half, torch-free: regressions of edit success on layer and tracing effect with
bootstrap verdicts (:mod:`~locedit.analysis.regressions`), the localization comparison
(:mod:`~locedit.analysis.localizations`), the run summary and the figures."""
