"""Cross-venue analytics and the liquidity-vacuum score, computed from the tick sample.

``stage.AnalyticsStage`` runs right after the metric tick (``BookPipeline.tick``, used by
the daemon and by replay alike) and returns the sample extended with per-book score
columns, the asset and FX tables and the tick's score state changes. ``fx.LiveFx`` is the
pipeline's quote -> USD source, measured from the USD venues' own books. The numeric work
is in ``kernels`` (numba, batched over all books), each kernel with a plain-Python twin
in ``reference``.
"""
