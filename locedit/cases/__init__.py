"""The cases half: CounterFact records (:mod:`~locedit.cases.counterfact`) and which of them the
model completes correctly (:mod:`~locedit.cases.correctness`), the cases tracing and editing share."""
